// The discrete-event clock on its own: alarms fire in time order (ties in the order they were set),
// time jumps straight to the next alarm, and nothing moves while work holds the clock.

import assert from "node:assert/strict";
import { test } from "node:test";
import { VirtualClock } from "../sim/index.ts";

test("alarms fire in time order, ties in the order set, and a cancelled alarm never fires", async () => {
  const clock = new VirtualClock({ start: 1000 });
  const fired: string[] = [];
  clock.setAlarm(3000, () => fired.push(`c@${clock.now()}`));
  clock.setAlarm(2000, () => fired.push(`a@${clock.now()}`));
  clock.setAlarm(2000, () => fired.push(`b@${clock.now()}`));
  const cancel = clock.setAlarm(2500, () => fired.push("cancelled"));
  cancel();
  await clock.runUntil(10_000);
  assert.deepEqual(fired, ["a@2000", "b@2000", "c@3000"]);
  assert.equal(clock.now(), 10_000);
});

test("a hold stops time until it is released; an alarm already past fires at the current time", async () => {
  const clock = new VirtualClock({ start: 0 });
  const release = clock.hold();
  let firedAt: number | undefined;
  clock.setAlarm(500, () => {
    firedAt = clock.now();
  });
  await new Promise((resolve) => setTimeout(resolve, 20));
  assert.equal(firedAt, undefined);
  assert.equal(clock.now(), 0);
  clock.advanceTo(800);
  release();
  await clock.runUntil(900);
  // Time never runs backwards: the late alarm sees the time a device running ahead reached.
  assert.equal(firedAt, 800);
  assert.equal(clock.now(), 900);
});

test("a hold real time never releases is dropped after holdLimitMs and reported", async () => {
  const stalls: number[] = [];
  const clock = new VirtualClock({ start: 0, holdLimitMs: 30, onStall: (heldMs) => stalls.push(heldMs) });
  clock.hold();
  await clock.runUntil(60_000);
  assert.equal(stalls.length, 1);
  assert.equal(clock.now(), 60_000);
});

test("sleep resolves at its virtual moment; the horizon is the earliest alarm", async () => {
  const clock = new VirtualClock({ start: 0 });
  assert.equal(clock.horizon(), Number.POSITIVE_INFINITY);
  const slept = clock.sleep(86_400_000).then(() => clock.now());
  assert.equal(clock.horizon(), 86_400_000);
  assert.equal(await slept, 86_400_000);
});
