// Structured device logging: one JSON object per line on the debug console (XS `trace`), so the
// simulator, a serial monitor and later the `d/{id}/log` uplink all parse the same records.

import type { LogLevel } from "kestrel/settings";

export type LogFields = Record<string, string | number | boolean | undefined>;

const SEVERITY: Readonly<Record<LogLevel, number>> = Object.freeze({ debug: 0, info: 1, warn: 2, error: 3 });

let threshold = SEVERITY.info;

/** Records below level are skipped; set at run time by the set-config command. */
export function setLogLevel(level: LogLevel): void {
  threshold = SEVERITY[level];
}

export function log(level: LogLevel, msg: string, fields?: LogFields): void {
  if (SEVERITY[level] < threshold) return;
  const record: LogFields = { level, msg, ts: Date.now() };
  if (fields) Object.assign(record, fields);
  trace(`${JSON.stringify(record)}\n`);
}

export function describeError(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
