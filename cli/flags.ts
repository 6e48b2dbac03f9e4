// Option parsers commander calls while it reads the command line. The command definitions
// (cli/definitions/) use them, so they load on every start: nothing here may import the simulator.

/** A repeatable option's values, in the order given. */
export function collect(v: string, prev: string[] = []): string[] {
  return [...prev, v];
}
