// Why the device booted, and boot-loop protection. The chip's own reset cause (esp_reset_reason,
// through Moddable's resetReason module) is refined by a mark the firmware writes to flash before
// each deliberate restart (command, watchdog, OTA). Abnormal resets (watchdog, crash, brownout,
// unknown) are counted in flash; the count is cleared once the device has run a whole window
// without resetting, or by a power-on or a deliberate restart; reaching the limit means safe mode.

import getResetReason from "resetReason";
import type { ResetReason } from "@kestrel/wire";
import type Log from "kestrel/log";
import { describeError } from "kestrel/log";
import Preference from "preference";

const PREFERENCE_DOMAIN = "kestrel";
/** Set just before a deliberate restart, read and cleared at the next boot. */
const MARK_KEY = "reset";
/** Abnormal resets in a row, none followed by a clean run of the boot-loop window. */
const LOOP_KEY = "loopresets";

/** A restart the firmware chooses; its reason is written to flash before the chip resets. */
export type DeliberateReset = "command" | "watchdog" | "ota";

// esp_reset_reason_t, as Moddable's resetReason module returns it.
const ESP_RST_POWERON = 1;
const ESP_RST_EXT = 2;
const ESP_RST_SW = 3;
const ESP_RST_PANIC = 4;
const ESP_RST_INT_WDT = 5;
const ESP_RST_TASK_WDT = 6;
const ESP_RST_WDT = 7;
const ESP_RST_DEEPSLEEP = 8;
const ESP_RST_BROWNOUT = 9;

const ABNORMAL: readonly ResetReason[] = Object.freeze(["watchdog", "crash", "brownout", "unknown"]);

export interface BootReport {
  reason: ResetReason;
  /** Abnormal resets in a row, this boot included. */
  abnormalResets: number;
  safeMode: boolean;
}

function takeMark(): string | undefined {
  try {
    const mark = Preference.get(PREFERENCE_DOMAIN, MARK_KEY);
    if (mark !== undefined) Preference.delete(PREFERENCE_DOMAIN, MARK_KEY);
    return typeof mark === "string" ? mark : undefined;
  } catch {
    return undefined;
  }
}

function classify(hardware: number, mark: string | undefined): ResetReason {
  switch (hardware) {
    case ESP_RST_POWERON:
    case ESP_RST_EXT:
    case ESP_RST_DEEPSLEEP:
      return "power-on";
    case ESP_RST_SW:
      // esp_restart without a mark: XS aborted (out of memory, fatal error) and restarted the chip.
      return mark === "command" || mark === "watchdog" || mark === "ota" ? mark : "crash";
    case ESP_RST_PANIC:
      return "crash";
    case ESP_RST_INT_WDT:
    case ESP_RST_TASK_WDT:
    case ESP_RST_WDT:
      return "watchdog";
    case ESP_RST_BROWNOUT:
      return "brownout";
    default:
      return "unknown";
  }
}

function readLoopCount(): number {
  try {
    const count = Preference.get(PREFERENCE_DOMAIN, LOOP_KEY);
    return typeof count === "number" && count > 0 ? count : 0;
  } catch {
    return 0;
  }
}

function writeLoopCount(count: number, log: Log): void {
  try {
    if (count > 0) Preference.set(PREFERENCE_DOMAIN, LOOP_KEY, count);
    else if (readLoopCount() > 0) Preference.delete(PREFERENCE_DOMAIN, LOOP_KEY);
  } catch (error) {
    log.write("error", "boot-loop counter not written", { error: describeError(error) });
  }
}

/** Reads and clears this boot's reset cause and updates the boot-loop count; call once at boot. */
export function takeBootReport(safeModeAfter: number, log: Log): BootReport {
  const reason = classify(getResetReason().reason, takeMark());
  const abnormalResets = ABNORMAL.includes(reason) ? readLoopCount() + 1 : 0;
  writeLoopCount(abnormalResets, log);
  return { reason, abnormalResets, safeMode: abnormalResets >= safeModeAfter };
}

/** Records why the firmware is about to restart the chip; a command restart also forgives past resets. */
export function markDeliberateReset(reason: DeliberateReset, log: Log): void {
  try {
    Preference.set(PREFERENCE_DOMAIN, MARK_KEY, reason);
    if (reason === "command") writeLoopCount(0, log);
  } catch (error) {
    log.write("error", "reset reason not recorded", { error: describeError(error) });
  }
}

/** The device ran a whole boot-loop window without resetting: past resets no longer count. */
export function forgiveResets(log: Log): void {
  writeLoopCount(0, log);
}
