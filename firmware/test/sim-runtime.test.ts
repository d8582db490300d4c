// The simulated Moddable platform modules inside XS behave like the SDK's: timer ordering and
// clearing, Timer.delay on the device clock, Time.ticks, preference round trips, the virtual Date,
// and the compartment's isolation of the simulator host from firmware modules.

import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { PreferenceStore } from "../sim/preferences.ts";
import { waitUntil } from "./wait.ts";
import { RESULT_PRELUDE, runInXs } from "./xs-harness.ts";

test("timers fire in order, repeat until cleared, and delay advances the device clock", async () => {
  const run = await runInXs(`
import Timer from "timer";
import Time from "time";
${RESULT_PRELUDE}
export default function () {
  const order = [];
  let repeats = 0;
  Timer.set(() => order.push("later"), 40);
  Timer.set(() => order.push("soon"), 0);
  const parked = Timer.set(() => order.push("rescheduled"), 10_000);
  Timer.schedule(parked, 20);
  const dropped = Timer.set(() => order.push("cleared"), 5);
  Timer.clear(dropped);
  Timer.repeat((timer) => {
    repeats++;
    if (repeats === 3) Timer.clear(timer);
  }, 5);
  Timer.set(() => {
    const before = Date.now();
    const ticks = Time.ticks;
    Timer.delay(30);
    result({ order, repeats, delayed: Date.now() - before, ticked: Time.delta(ticks), isDate: new Date() instanceof Date });
  }, 120);
}`);
  await waitUntil(() => run.results().length > 0, "the entry module's result");
  await run.machine.stop();
  const [outcome] = run.results();
  assert.deepEqual(outcome?.order, ["soon", "rescheduled", "later"]);
  assert.equal(outcome?.repeats, 3);
  assert.ok((outcome?.delayed as number) >= 30);
  assert.ok((outcome?.ticked as number) >= 30);
  assert.equal(outcome?.isDate, true);
});

test("an exception in a timer callback is logged and the device keeps running", async () => {
  const run = await runInXs(`
import Timer from "timer";
${RESULT_PRELUDE}
export default function () {
  Timer.set(() => { throw new Error("boom"); }, 0);
  Timer.set(() => result({ alive: true }), 20);
}`);
  await waitUntil(() => run.results().length > 0, "the entry module's result");
  await run.machine.stop();
  const logged = run.logs.find((entry) => entry.msg === "uncaught exception in a timer callback");
  assert.ok(logged);
  assert.match(String(logged.fields.err), /boom/);
  assert.equal(run.machine.haltReason, undefined);
});

test("a runaway loop exhausts the compute meter and halts the device instead of hanging the host", async () => {
  const run = await runInXs(
    `
import Timer from "timer";
export default function () {
  Timer.set(() => { for (;;) {} }, 20);
}`,
    { meteringLimit: 1_000_000 },
  );
  await waitUntil(() => run.machine.haltReason !== undefined, "the machine to halt");
  assert.match(String(run.machine.haltReason), /too much computation/);
  assert.ok(run.logs.some((entry) => entry.level === "error" && entry.msg === "simulated device halted"));
  await run.machine.stop();
});

test("firmware modules cannot import the simulator host", async () => {
  await assert.rejects(
    runInXs(`import host from "kestrel-sim:host"; export default function () {}`),
    /firmware failed to boot: .*"kestrel-sim:host" is reserved to simulated platform modules/,
  );
});

test("preferences written in XS land in the device's store", async () => {
  const dir = mkdtempSync(join(tmpdir(), "kestrel-xs-prefs-"));
  try {
    const store = new PreferenceStore(join(dir, "p.json"));
    const run = await runInXs(
      `
import Preference from "preference";
${RESULT_PRELUDE}
export default function () {
  Preference.set("app", "count", 41);
  Preference.set("app", "raw", Uint8Array.of(1, 2, 3).buffer);
  let error;
  try { Preference.set("app", "ratio", 0.5); } catch (e) { error = e.message; }
  const raw = new Uint8Array(Preference.get("app", "raw"));
  result({ count: Preference.get("app", "count"), raw: Array.from(raw), keys: Preference.keys("app"), error });
}`,
      { ports: { preference: store } },
    );
    await run.machine.stop();
    const [outcome] = run.results();
    assert.equal(outcome?.count, 41);
    assert.deepEqual(outcome?.raw, [1, 2, 3]);
    assert.deepEqual(outcome?.keys, ["count", "raw"]);
    assert.equal(outcome?.error, "float unsupported");
    assert.equal(new PreferenceStore(join(dir, "p.json")).get("app", "count"), 41);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
