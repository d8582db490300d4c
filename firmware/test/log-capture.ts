// A SimLogger that keeps every entry, so tests can assert on what the firmware and simulator logged.

import type { SimLogger } from "../sim/index.ts";

export interface CapturedLog {
  level: "debug" | "info" | "warn" | "error";
  msg: string | undefined;
  fields: Record<string, unknown>;
}

export function captureLogs(): { logger: SimLogger; entries: CapturedLog[] } {
  const entries: CapturedLog[] = [];
  const push =
    (level: CapturedLog["level"]) =>
    (fields: object, msg?: string): void => {
      entries.push({ level, msg, fields: fields as Record<string, unknown> });
    };
  return { entries, logger: { debug: push("debug"), info: push("info"), warn: push("warn"), error: push("error") } };
}
