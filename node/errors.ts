/*
 * Errors a user can cause in the simulator (bad manifests, unknown references). Each has a stable `code`
 * and a message naming what and where; the CLI prints it on one line and exits 2.
 */
export class SimError extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly hint?: string,
  ) {
    super(message);
    this.name = "SimError";
  }
}
