// The compiled structured logger and log shipper in XS: records are JSON lines the wire's LogBatch
// validator accepts, debug stays off flash, the token bucket bounds what is handed out, a failed
// publish sends the same records again, and records lost to a full ring are reported as dropped.

import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { validateLogBatch } from "@kestrel/wire";
import { FLASH_SECTOR_BYTES, FlashPartition } from "../sim/index.ts";
import { RESULT_PRELUDE, runInXs } from "./xs-harness.ts";

let dir: string;

before(() => {
  dir = mkdtempSync(join(tmpdir(), "kestrel-logs-"));
});

after(() => rmSync(dir, { recursive: true, force: true }));

/** Runs body in XS with `shipper` on partition "logs" (rate given) attached as the log sink. */
async function withShipper(file: string, sectors: number, rate: string, body: string) {
  const flash = new FlashPartition({ name: "logs", file: join(dir, file), byteLength: sectors * FLASH_SECTOR_BYTES });
  const run = await runInXs(
    `import LogShipper from "kestrel/log-shipper";
import Log from "kestrel/log";
${RESULT_PRELUDE}
export default function () {
  try {
    const shipper = new LogShipper("logs", ${rate});
    const log = new Log();
    log.setSink(shipper.append);
    ${body}
  } catch (error) {
    result({ error: error.message });
  }
}`,
    { ports: { flash } },
  );
  await run.machine.stop();
  flash.close();
  const results = run.results();
  assert.equal(results[0]?.error, undefined);
  return results;
}

function batchOf(text: unknown) {
  const parsed = validateLogBatch(JSON.parse(String(text)));
  assert.ok(parsed.ok, parsed.ok ? "" : parsed.error.message);
  return parsed.value;
}

test("records are structured JSON lines; debug stays on the console; the level is a threshold", async () => {
  const [result] = await withShipper(
    "records.bin",
    4,
    "{ perSecond: 1, burst: 20, perBatch: 10 }",
    `log.setBoot(7);
    log.write("info", "sensor ready", { address: 118, ok: true }, "bmp280");
    log.write("debug", "not persisted");
    log.setLevel("warn");
    log.write("info", "below the threshold");
    log.write("warn", "x".repeat(300), { level: "spoofed", error: "e".repeat(300) });
    log.setLevel("debug");
    log.write("debug", "console only");
    result({ batch: shipper.next(), queued: shipper.queued });`,
  );
  const batch = batchOf(result?.batch);
  assert.equal(result?.queued, 2);
  assert.equal(batch.dropped, undefined);
  assert.equal(batch.records.length, 2);
  const [ready, long] = batch.records;
  assert.deepEqual(
    { ...ready, ts: 0 },
    { boot: 7, seq: 0, ts: 0, level: "info", tag: "bmp280", msg: "sensor ready", address: 118, ok: true },
  );
  assert.ok(Math.abs(Number(ready?.ts) - Date.now()) < 60_000, "ts is the device clock, epoch ms");
  assert.equal(long?.seq, 1, "records below the threshold are not emitted and take no seq");
  assert.equal(long?.level, "warn", "a field cannot overwrite the record's own keys");
  assert.equal(long?.tag, "main");
  assert.equal(String(long?.msg).length, 240, "long text is cut");
  assert.equal(String(long?.error).length, 240);
});

test("the token bucket bounds the records handed out, and a batch not sent is handed out again", async () => {
  const [result] = await withShipper(
    "bucket.bin",
    4,
    // Practically no refill during the test: only the burst is available.
    "{ perSecond: 0.001, burst: 3, perBatch: 2 }",
    `for (let n = 0; n < 10; n++) log.write("info", "record", { n });
    const first = shipper.next();
    const again = shipper.next();
    shipper.sent();
    const second = shipper.next();
    shipper.sent();
    const third = shipper.next();
    result({ first, again, second, third: third ?? null, queued: shipper.queued });`,
  );
  const first = batchOf(result?.first);
  assert.deepEqual(
    first.records.map((r) => r.n),
    [0, 1],
  );
  assert.equal(result?.again, result?.first, "unsent records go first, unchanged");
  assert.deepEqual(
    batchOf(result?.second).records.map((r) => r.n),
    [2],
    "one token left of the burst of three",
  );
  assert.equal(result?.third, null, "the bucket is empty");
  assert.equal(result?.queued, 7);
});

test("a full ring drops its oldest records, and the next batch reports how many", async () => {
  const [result] = await withShipper(
    "full.bin",
    2,
    "{ perSecond: 1, burst: 20, perBatch: 10 }",
    `for (let n = 0; n < 40; n++) log.write("info", "record", { n, pad: "p".repeat(200) });
    log.write("info", "too long to keep", { a: "a".repeat(240), b: "b".repeat(240), c: "c".repeat(240) });
    const batch = shipper.next();
    const reported = shipper.sent();
    result({ batch, reported, dropped: shipper.dropped, next: shipper.next() });`,
  );
  const batch = batchOf(result?.batch);
  const dropped = Number(result?.dropped);
  assert.ok(dropped > 1, "the ring rotated");
  assert.equal(batch.dropped, dropped);
  assert.equal(result?.reported, dropped);
  const first = Number(batch.records[0]?.n);
  assert.equal(first, dropped - 1, "the oldest records went first (plus the one too long to keep)");
  assert.equal(batchOf(result?.next).dropped, undefined, "dropped is reported once");
});
