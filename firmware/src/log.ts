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

let threshold = SEVERITY.info;
let boot = 0;
let seq = 0;
let sink: LogSink | undefined;
const early: string[] = [];

/** Records below level are skipped; set at run time by the set-config command. */
export function setLogLevel(level: LogLevel): void {
  threshold = SEVERITY[level];
}

/** The boot counter stamped on every record from now on. */
export function setLogBoot(value: number): void {
  boot = value;
}

/** Attaches the sink and hands it the records logged before it was there. */
export function setLogSink(next: LogSink): void {
  sink = next;
  for (const line of early.splice(0)) next(line);
}

function text(value: string): string {
  return value.length > TEXT_MAX ? value.slice(0, TEXT_MAX) : value;
}

/** tag names the module the record comes from. */
export function log(level: LogLevel, msg: string, fields?: LogFields, tag = "main"): void {
  if (SEVERITY[level] < threshold) return;
  const record: LogFields = { boot, seq: seq++, ts: Date.now(), level, tag, msg: text(msg) };
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
  if (sink) sink(line);
  else if (early.length < EARLY_RECORDS) early.push(line);
}

export function describeError(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
