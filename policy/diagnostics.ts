// What one run found wrong with its input, kept apart from what it computed: every refused object with
// every one of its problems, and every warning (accepted but not enforced, deprecated forms). Problems
// never stop the run — valid objects and policies still apply — but they decide its exit status (bad
// input). With `strict`, a warning counts as an error. Each message is written once, as it is found.
import type { PolicyError } from "./errors.ts";

export interface DiagnosticsSummary {
  /** "Kind ns/name" of every refused object or policy. */
  refused: string[];
  errors: number;
  warnings: number;
  problems: { code: string; message: string }[];
  warningList: { code: string; message: string }[];
}

export class Diagnostics {
  readonly errors: PolicyError[] = [];
  readonly warnings: PolicyError[] = [];
  readonly refused: string[] = [];
  private readonly seen = new Set<string>();

  constructor(
    readonly strict: boolean,
    private readonly write: (line: string) => void,
  ) {}

  error(e: PolicyError): void {
    if (this.seen.has(e.message)) return;
    this.seen.add(e.message);
    this.errors.push(e);
    this.write(`ciliate: ${e.message}${e.hint ? ` (${e.hint})` : ""}`);
  }

  /** Accepted-but-not-enforced or deprecated; an error under `strict`. */
  warning(e: PolicyError): void {
    if (this.strict) return this.error(e);
    if (this.seen.has(e.message)) return;
    this.seen.add(e.message);
    this.warnings.push(e);
    this.write(`ciliate: warning: ${e.message}${e.hint ? ` (${e.hint})` : ""}`);
  }

  refuse(object: string): void {
    if (!this.refused.includes(object)) this.refused.push(object);
  }

  get failed(): boolean {
    return this.errors.length > 0;
  }

  summary(): DiagnosticsSummary {
    const list = (l: PolicyError[]) => l.map((e) => ({ code: e.code, message: e.message }));
    return { refused: [...this.refused], errors: this.errors.length, warnings: this.warnings.length, problems: list(this.errors), warningList: list(this.warnings) };
  }
}
