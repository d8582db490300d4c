// GPIO in XS against the simulated pins: a bouncing contact yields exactly one settled edge per press
// and release, edge callbacks see the right direction, outputs and PWM duty reach the pins.

import assert from "node:assert/strict";
import { test } from "node:test";
import { GpioModel } from "../sim/index.ts";
import { waitUntil } from "./wait.ts";
import { RESULT_PRELUDE, runInXs } from "./xs-harness.ts";

const BUTTON = 13;
const LED = 2;
const FAN = 25;

// Results say `value`, not `level`: `level` is the log record's own field.
test("a bouncing button gives one falling and one rising edge, after the debounce time", async () => {
  const gpio = new GpioModel(Date.now);
  const run = await runInXs(
    `
import DebouncedInput from "gpio/debounced-input";
${RESULT_PRELUDE}
let input;
export default function () {
  input = new DebouncedInput({
    pin: ${BUTTON},
    debounceMs: 20,
    onChange: (value) => result({ value, settled: input.level }),
    onFalling: () => result({ edge: "falling" }),
    onRising: () => result({ edge: "rising" }),
  });
  result({ initial: input.level });
}`,
    { ports: { gpio } },
  );
  gpio.onEdge = (pin) => void run.machine.post("gpio", pin, {});
  try {
    gpio.bounce(BUTTON, 0, 6);
    await waitUntil(() => run.results().length >= 3, "the press to settle");
    await new Promise((resolve) => setTimeout(resolve, 60));
    assert.deepEqual(run.results(), [{ initial: 1 }, { value: 0, settled: 0 }, { edge: "falling" }]);
    gpio.bounce(BUTTON, 1, 4);
    await waitUntil(() => run.results().length >= 5, "the release to settle");
    // A glitch shorter than the debounce time that returns to the same level is no edge at all.
    gpio.drive(BUTTON, 0);
    gpio.drive(BUTTON, 1);
    await new Promise((resolve) => setTimeout(resolve, 60));
    assert.deepEqual(run.results().slice(3), [{ value: 1, settled: 1 }, { edge: "rising" }]);
  } finally {
    await run.machine.stop();
  }
});

test("digital output levels and PWM duty reach the pins", async () => {
  const gpio = new GpioModel(Date.now);
  const run = await runInXs(
    `
import Digital from "embedded:io/digital";
import PwmOutput from "gpio/pwm-output";
${RESULT_PRELUDE}
export default function () {
  const led = new Digital({ pin: ${LED}, mode: Digital.Output });
  led.write(1);
  led.write(0);
  led.close();
  const fan = new PwmOutput({ pin: ${FAN} });
  fan.duty = 0.5;
  fan.duty = 1;
  try { fan.duty = 1.5; } catch (error) { result({ error: error.message }); }
  result({ duty: fan.duty });
  fan.close();
}`,
    { ports: { gpio } },
  );
  await run.machine.stop();
  assert.deepEqual(
    gpio.levels.map(({ pin, value }) => [pin, value]),
    [
      [LED, 1],
      [LED, 0],
    ],
  );
  assert.deepEqual(
    gpio.pwm.map(({ pin, value, resolution }) => [pin, value, resolution]),
    [
      [FAN, 0, 10],
      [FAN, 512, 10],
      [FAN, 1023, 10],
    ],
  );
  assert.deepEqual(run.results(), [{ error: "pwm: duty 1.5 outside 0..1" }, { duty: 1 }]);
});
