// Structured device logging: one JSON object per line on the debug console (XS `trace`), so the
// simulator, a serial monitor and later the `d/{id}/log` uplink all parse the same records.

export type LogLevel = "debug" | "info" | "warn" | "error";

export type LogFields = Record<string, string | number | boolean | undefined>;

export function log(level: LogLevel, msg: string, fields?: LogFields): void {
  const record: LogFields = { level, msg, ts: Date.now() };
  if (fields) Object.assign(record, fields);
  trace(`${JSON.stringify(record)}\n`);
}

export function describeError(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
