// The compiled reset-reason module in XS: the chip's esp_reset_reason() code and the firmware's
// own mark make the reported reason; abnormal resets in a row are counted in flash up to safe
// mode, and a power-on, a commanded restart or a clean run clears the count.

import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { PreferenceStore } from "../sim/preferences.ts";
import { RESULT_PRELUDE, runInXs } from "./xs-harness.ts";

let dir: string;

before(() => {
  dir = mkdtempSync(join(tmpdir(), "kestrel-reset-"));
});

after(() => rmSync(dir, { recursive: true, force: true }));

/**
 * Boots once per step in a fresh XS machine on the same preferences, as successive chip resets
 * would; each step gives the chip's reset code and what the firmware does before the next reset.
 */
async function bootSequence(steps: { code: number; beforeReset?: string }[], file: string) {
  const preference = new PreferenceStore(join(dir, file));
  const reports: Record<string, unknown>[] = [];
  for (const step of steps) {
    const run = await runInXs(
      `import { forgiveResets, markDeliberateReset, takeBootReport } from "kestrel/reset";
import Log from "kestrel/log";
${RESULT_PRELUDE}
export default function () {
  const log = new Log();
  result(takeBootReport(3, log));
  ${step.beforeReset ?? ""}
}`,
      { ports: { preference, system: { handle: () => ({ reason: step.code, string: "" }) } } },
    );
    await run.machine.stop();
    const [report] = run.results();
    assert.ok(report);
    reports.push(report);
  }
  return reports;
}

const POWER_ON = 1;
const SOFTWARE = 3;
const PANIC = 4;
const TASK_WDT = 6;
const BROWNOUT = 9;

test("the chip's code and the firmware's mark make the reason", async () => {
  const reports = await bootSequence(
    [
      { code: POWER_ON, beforeReset: `markDeliberateReset("command", log);` },
      { code: SOFTWARE, beforeReset: `markDeliberateReset("ota", log);` },
      { code: SOFTWARE },
      { code: SOFTWARE },
      { code: PANIC },
      { code: BROWNOUT },
      { code: 0 },
    ],
    "reasons.json",
  );
  assert.deepEqual(
    reports.map((report) => report.reason),
    ["power-on", "command", "ota", "crash", "crash", "brownout", "unknown"],
    "a software reset without a mark is XS aborting",
  );
});

test("abnormal resets in a row lead to safe mode; a clean run, a command or a power-on clears them", async () => {
  const reports = await bootSequence(
    [
      { code: TASK_WDT },
      { code: PANIC },
      { code: SOFTWARE, beforeReset: `markDeliberateReset("watchdog", log);` },
      { code: SOFTWARE },
      { code: TASK_WDT, beforeReset: "forgiveResets(log);" },
      { code: TASK_WDT, beforeReset: `markDeliberateReset("command", log);` },
      { code: SOFTWARE },
      { code: TASK_WDT },
      { code: POWER_ON },
      { code: TASK_WDT },
    ],
    "loop.json",
  );
  assert.deepEqual(
    reports.map((report) => [report.reason, report.abnormalResets, report.safeMode]),
    [
      ["watchdog", 1, false],
      ["crash", 2, false],
      ["crash", 3, true],
      ["watchdog", 4, true],
      ["watchdog", 5, true],
      ["watchdog", 1, false],
      ["command", 0, false],
      ["watchdog", 1, false],
      ["power-on", 0, false],
      ["watchdog", 1, false],
    ],
  );
});
