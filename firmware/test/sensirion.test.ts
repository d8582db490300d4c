// The compiled SHT3x and SHT4x drivers running in XS over the simulated I2C bus, against the
// command-level models: the datasheet CRC example, conversion formulas, the SHT3x status register's
// reset value, and the failure modes a board can show (CRC failure, NACK, stuck bus, timeout).

import assert from "node:assert/strict";
import { test } from "node:test";
import { FaultSet, I2cBus, type I2cTarget, Sht3xModel, Sht4xModel, sensirionCrc } from "../sim/index.ts";
import { RESULT_PRELUDE, runInXs } from "./xs-harness.ts";

const PINS = { sda: 21, scl: 22 };

type Chip = "sht3x" | "sht4x";
type Model = Sht3xModel | Sht4xModel;

const CHIPS = [
  { chip: "sht3x", Model: Sht3xModel, reset: "0x30a2", measure: 0x2400, timeoutMs: 26 },
  { chip: "sht4x", Model: Sht4xModel, reset: "0x94", measure: 0xfd, timeoutMs: 19 },
] as const;

/** Passes traffic to model and calls action(n) after the n-th time the chip receives command. */
function onCommand(model: Model, command: number, action: (count: number) => void): I2cTarget {
  let count = 0;
  return {
    get present() {
      return model.present;
    },
    write(bytes) {
      model.write(bytes);
      if (model.commands.at(-1) === command) action(++count);
    },
    read: (length) => model.read(length),
  };
}

/** Constructs the driver, then runs body with `sensor`; any error becomes a result. */
async function run(
  chip: Chip,
  body: string,
  setup: (bus: I2cBus) => void,
  options: { address?: number; faults?: FaultSet } = {},
): Promise<Record<string, unknown>[]> {
  const bus = new I2cBus(PINS, options.faults);
  setup(bus);
  const xs = await runInXs(
    `
import I2C from "embedded:io/i2c";
import Sensor from "sensors/${chip}";
import { sensirionCrc8 } from "sensors/sensirion";
${RESULT_PRELUDE}
const attempt = (f) => { try { f(); } catch (error) { result({ error: error.message }); } };
export default function () {
  attempt(() => {
    const sensor = new Sensor({ sensor: { io: I2C, data: ${PINS.sda}, clock: ${PINS.scl}, address: ${options.address ?? 0x44} } });
    try { ${body} } finally { sensor.close(); }
  });
}`,
    { buses: [bus] },
  );
  await xs.machine.stop();
  return xs.results();
}

const SAMPLE = `attempt(() => { const s = sensor.sample(); result({ temperature: s.temperature, humidity: s.humidity }); });`;

test("the CRC matches the datasheet example (0xBEEF -> 0x92) in the driver and in the model", async () => {
  assert.equal(sensirionCrc([0xbe, 0xef]), 0x92);
  const results = await run(
    "sht3x",
    "result({ crc: sensirionCrc8(Uint8Array.of(0xbe, 0xef)), zero: sensirionCrc8(Uint8Array.of(0, 0)) });",
    (bus) => bus.attach(0x44, new Sht3xModel()),
  );
  assert.deepEqual(results, [{ crc: 0x92, zero: sensirionCrc([0, 0]) }]);
});

test("sht3x: the status register reads 0x8010 after reset and clears to 0", async () => {
  const results = await run(
    "sht3x",
    "result({ status: sensor.readStatus() }); sensor.clearStatus(); result({ status: sensor.readStatus() });",
    (bus) => bus.attach(0x44, new Sht3xModel()),
  );
  assert.deepEqual(results, [{ status: 0x8010 }, { status: 0 }]);
});

for (const { chip, Model, reset, measure, timeoutMs } of CHIPS) {
  test(`${chip}: soft resets, reads the serial number, converts with the datasheet formulas`, async () => {
    const model = new Model({ serialNumber: 0x12345678 });
    model.serveRaw(0x6666, 0x8000);
    const results = await run(chip, `result({ serial: sensor.serialNumber }); ${SAMPLE}`, (bus) =>
      bus.attach(0x44, model),
    );
    const humidity = chip === "sht3x" ? (100 * 0x8000) / 65535 : -6 + (125 * 0x8000) / 65535;
    assert.deepEqual(results, [{ serial: 0x12345678 }, { temperature: -45 + (175 * 0x6666) / 65535, humidity }]);
    assert.ok(Math.abs((results[1]?.temperature as number) - 25) < 0.01, "0x6666 is about 25 °C");
    assert.equal(model.commands[0], Number(reset), "the first command is a soft reset");
    assert.equal(model.served.length, 1);
  });

  test(`${chip}: the ends of the scale give the datasheet's range limits`, async () => {
    const low = new Model();
    low.serveRaw(0, 0);
    const high = new Model({ address: 0x45 });
    high.serveRaw(0xffff, 0xffff);
    const [min] = await run(chip, SAMPLE, (bus) => bus.attach(0x44, low));
    const [max] = await run(chip, SAMPLE, (bus) => bus.attach(0x45, high), { address: 0x45 });
    // SHT4x humidity spans -6..119 %RH before cropping; the driver crops it to the physical range.
    assert.deepEqual([min?.temperature, min?.humidity, max?.temperature, max?.humidity], [-45, 0, 130, 100]);
  });

  test(`${chip}: samples the model's environment, one measurement each`, async () => {
    const model = new Model({ seed: 7 });
    const results = await run(chip, `for (let i = 0; i < 3; i++) { ${SAMPLE} }`, (bus) => bus.attach(0x44, model));
    assert.equal(model.served.length, 3);
    assert.deepEqual(
      results.map((r) => r.temperature),
      model.served.map((c) => c.temperature),
    );
    results.forEach((r, i) => {
      assert.ok(Math.abs((r.humidity as number) - (model.served[i]?.humidity as number)) < 1e-9);
      assert.ok((r.humidity as number) > 20 && (r.humidity as number) < 70);
    });
  });

  test(`${chip}: a corrupted word is an error reading, and the next clean one is a value`, async () => {
    const faults = new FaultSet(3);
    const model = new Model();
    const results = await run(
      chip,
      `${SAMPLE} ${SAMPLE}`,
      (bus) =>
        bus.attach(
          0x44,
          onCommand(model, measure, (count) =>
            count === 1 ? faults.set("corrupt", "i2c:0x44") : faults.clear("corrupt", "i2c:0x44"),
          ),
        ),
      { faults },
    );
    assert.match(String(results[0]?.error), new RegExp(`^${chip}: CRC mismatch in word [01]$`));
    assert.equal(results[1]?.temperature, model.served[1]?.temperature);
  });

  test(`${chip}: a corrupted serial number fails construction`, async () => {
    const faults = new FaultSet(5);
    faults.set("corrupt", "i2c:0x44");
    const results = await run(chip, SAMPLE, (bus) => bus.attach(0x44, new Model()), { faults });
    assert.match(String(results[0]?.error), new RegExp(`^${chip}: CRC mismatch in word [01]$`));
    assert.equal(results.length, 1);
  });

  test(`${chip}: an absent chip (NACK) fails construction, naming the address`, async () => {
    const results = await run(chip, SAMPLE, (bus) => bus.attach(0x44, new Model()), { address: 0x45 });
    assert.deepEqual(results, [{ error: `${chip}: command ${reset} failed (write failed: no ACK from address 0x45)` }]);
  });

  test(`${chip}: a bus stuck at boot or mid-measurement is an error, not a value`, async () => {
    const stuck = new FaultSet(1);
    stuck.set("stuck", "i2c");
    const atBoot = await run(chip, SAMPLE, (bus) => bus.attach(0x44, new Model()), { faults: stuck });
    assert.deepEqual(atBoot, [{ error: `${chip}: command ${reset} failed (write failed: i2c timeout: SDA held low)` }]);

    const faults = new FaultSet(1);
    const midway = await run(
      chip,
      SAMPLE,
      (bus) =>
        bus.attach(
          0x44,
          onCommand(new Model(), measure, () => faults.set("stuck", "i2c")),
        ),
      { faults },
    );
    assert.deepEqual(midway, [
      { error: `${chip}: no data within ${timeoutMs} ms (read failed: i2c timeout: SDA held low)` },
    ]);
  });

  test(`${chip}: a measurement that never completes times out`, async () => {
    const model = new Model();
    const results = await run(chip, SAMPLE, (bus) =>
      bus.attach(
        0x44,
        onCommand(model, measure, () => model.holdMeasurement(true)),
      ),
    );
    assert.deepEqual(results, [
      { error: `${chip}: no data within ${timeoutMs} ms (read failed: no ACK from address 0x44)` },
    ]);
    assert.equal(model.served.length, 0);
  });
}
