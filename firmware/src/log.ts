// Structured device logging: every record is one JSON line {boot, seq, ts, level, tag, msg,
// ...fields} on the debug console (XS `trace`), and records at info and above also go to a sink
// (the flash log ring that ships them to `d/{id}/log`), so the simulator, a serial monitor and the
// cloud all read the same records. (boot, seq) identifies a record; boot 0 means "before the boot
// counter was read".

import type { LogLevel } from "kestrel/settings";

export type LogFields = Record<string, string | number | boolean | undefined>;

/** Receives each persisted record's JSON line; must not log. */
export type LogSink = (line: string) => void;

const SEVERITY: Readonly<Record<LogLevel, number>> = Object.freeze({ debug: 0, info: 1, warn: 2, error: 3 });
/** Debug records stay on the console: writing them to flash would wear it out. */
const PERSIST_FROM = SEVERITY.info;
/** Records kept in RAM until the sink is attached at boot. */
const EARLY_RECORDS = 16;
/** Longer string fields are cut, so a record always fits the wire's limits. */
const TEXT_MAX = 240;

function text(value: string): string {
  return value.length > TEXT_MAX ? value.slice(0, TEXT_MAX) : value;
}

/**
 * The device's logger. Its state lives in an instance the app creates at boot, not in module
 * variables: on a device this module is preloaded into flash, where mutable module state would be
 * copied into RAM anyway (xsl warns about it).
 */
export default class Log {
  #threshold = SEVERITY.info;
  #boot = 0;
  #seq = 0;
  #sink: LogSink | undefined;
  readonly #early: string[] = [];

  /** Records below level are skipped; set at run time by the set-config command. */
  setLevel(level: LogLevel): void {
    this.#threshold = SEVERITY[level];
  }

  /** The boot counter stamped on every record from now on. */
  setBoot(value: number): void {
    this.#boot = value;
  }

  /** Attaches the sink and hands it the records logged before it was there. */
  setSink(next: LogSink): void {
    this.#sink = next;
    for (const line of this.#early.splice(0)) next(line);
  }

  /** tag names the module the record comes from. */
  write(level: LogLevel, msg: string, fields?: LogFields, tag = "main"): void {
    if (SEVERITY[level] < this.#threshold) return;
    const record: LogFields = { boot: this.#boot, seq: this.#seq++, ts: Date.now(), level, tag, msg: text(msg) };
    if (fields) {
      for (const key in fields) {
        const value = fields[key];
        // The record's own keys win over a field of the same name.
        if (!(key in record)) record[key] = typeof value === "string" ? text(value) : value;
      }
    }
    const line = JSON.stringify(record);
    trace(`${line}\n`);
    if (SEVERITY[level] < PERSIST_FROM) return;
    if (this.#sink) this.#sink(line);
    else if (this.#early.length < EARLY_RECORDS) this.#early.push(line);
  }
}

export function describeError(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
