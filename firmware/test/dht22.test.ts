// The DHT22 driver decoding captured level durations in XS, against the signal-level model: the
// AM2302 datasheet's example frames (65.8 %RH and 26.9 °C; -10.1 °C), checksum errors, a sensor that
// never answers or stops mid-frame, and pulse widths outside the datasheet's.

import assert from "node:assert/strict";
import { test } from "node:test";
import { Dht22Model, dht22Bytes, FaultSet, PulsePort } from "../sim/index.ts";
import { RESULT_PRELUDE, runInXs } from "./xs-harness.ts";

const PIN = 4;

async function sample(
  model: Dht22Model | undefined,
  reads = 1,
  faults?: FaultSet,
  gapMs = 0,
): Promise<Record<string, unknown>[]> {
  const port = new PulsePort(faults);
  if (model) port.attach(PIN, model);
  const xs = await runInXs(
    `
import PulseCapture from "kestrel/pulse-capture";
import DHT22 from "sensors/dht22";
import Timer from "timer";
${RESULT_PRELUDE}
export default function () {
  const sensor = new DHT22({ sensor: { io: PulseCapture, pin: ${PIN} } });
  for (let i = 0; i < ${reads}; i++) {
    if (i > 0) Timer.delay(${gapMs});
    try { const s = sensor.sample(); result({ temperature: s.temperature, humidity: s.humidity }); }
    catch (error) { result({ error: error.message }); }
  }
  sensor.close();
}`,
    { ports: { pulse: port } },
  );
  await xs.machine.stop();
  return xs.results();
}

test("decodes the datasheet's example frame: 65.8 %RH, 26.9 °C", async () => {
  const model = new Dht22Model();
  // 0000 0010 1001 0010 | 0000 0001 0000 1101 | 1010 0010
  model.serveBytes([0x02, 0x92, 0x01, 0x0d, 0xa2]);
  assert.deepEqual(await sample(model), [{ temperature: 26.9, humidity: 65.8 }]);
});

test("decodes a negative temperature: bit 15 is the sign (0x8065 is -10.1 °C)", async () => {
  const model = new Dht22Model();
  assert.deepEqual(dht22Bytes({ humidity: 65.8, temperature: -10.1 }), [0x02, 0x92, 0x80, 0x65, 0x79]);
  model.serveBytes(dht22Bytes({ humidity: 65.8, temperature: -10.1 }));
  assert.deepEqual(await sample(model), [{ temperature: -10.1, humidity: 65.8 }]);
});

test("within 2 s of a good read the last reading is served again; after 2 s the wire is read", async () => {
  const quick = new Dht22Model({ seed: 5 });
  const cached = await sample(quick, 3);
  assert.equal(quick.served.length, 1, "one frame on the wire");
  assert.deepEqual(cached, [cached[0], cached[0], cached[0]]);
  const model = new Dht22Model({ seed: 6 });
  const results = await sample(model, 2, undefined, 2000);
  assert.equal(model.served.length, 2);
  assert.deepEqual(
    results,
    model.served.map((r) => ({ temperature: r.temperature, humidity: r.humidity })),
  );
});

test("a checksum mismatch is an error, never a value", async () => {
  const model = new Dht22Model();
  model.serveBytes([0x02, 0x92, 0x01, 0x0d, 0xa3]);
  assert.deepEqual(await sample(model), [{ error: "dht22: checksum mismatch (sum 0xa2, sent 0xa3)" }]);
  const faults = new FaultSet(2);
  faults.set("corrupt", `dht:${PIN}`);
  const corrupted = await sample(new Dht22Model(), 3, faults);
  for (const outcome of corrupted) assert.match(String(outcome.error), /^dht22: checksum mismatch/);
});

test("no answer, or a frame cut short, is a timeout", async () => {
  assert.deepEqual(await sample(undefined), [{ error: "dht22: no response (timeout)" }]);
  const faults = new FaultSet(1);
  faults.set("disconnect", `dht:${PIN}`);
  assert.deepEqual(await sample(new Dht22Model(), 1, faults), [{ error: "dht22: no response (timeout)" }]);
  const model = new Dht22Model();
  model.cutAfterBits(23);
  assert.deepEqual(await sample(model), [{ error: "dht22: timeout after 23 of 40 bits" }]);
});

test("pulse widths outside the datasheet's are refused, whatever the bits would say", async () => {
  const { decodeDht22 } = await import("../src/sensors/dht22-frame.ts");
  const { dht22Pulses } = await import("../sim/index.ts");
  const frame = dht22Pulses([0x02, 0x92, 0x01, 0x0d, 0xa2], 2, () => 0.5);
  const decode = (durations: number[]) =>
    decodeDht22(Uint16Array.from(durations), durations.length, 0, new Uint8Array(5), { temperature: 0, humidity: 0 });
  assert.deepEqual(decode(frame.durations), { temperature: 26.9, humidity: 65.8 });
  const longHigh = [...frame.durations];
  longHigh[4 + 2 * 7 + 1] = 150; // bit 7's high level
  assert.throws(() => decode(longHigh), { message: "dht22: bad timing in bit 7 (50 µs low, 150 µs high)" });
  const slowResponse = [...frame.durations];
  slowResponse[2] = 300;
  assert.throws(() => decode(slowResponse), { message: "dht22: bad response (300 µs low, 80 µs high)" });
});
