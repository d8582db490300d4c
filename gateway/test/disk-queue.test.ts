// The durable uplink queue on its own: what is appended comes back in order
// after a restart until acknowledged, a torn tail or a corrupted record does
// not take earlier records with it, and a full queue refuses appends.

import assert from "node:assert/strict";
import { appendFile, mkdtemp, open, readdir, readFile, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, test } from "node:test";
import { DiskQueue, frameRecord, QueueFullError } from "../src/uplink/disk-queue.ts";

const tempDir = () => mkdtemp(join(tmpdir(), "kestrel-queue-"));
const texts = async (queue: DiskQueue) => (await queue.peek(Number.MAX_SAFE_INTEGER)).map((r) => r.payload.toString());
const firstLetters = async (queue: DiskQueue) => (await texts(queue)).map((text) => text[0]);
const segments = async (dir: string) => (await readdir(dir)).filter((name) => name.endsWith(".seg")).sort();

async function filled(dir: string, payloads: string[], segmentBytes?: number): Promise<void> {
  const { queue } = await DiskQueue.open({ dir, maxBytes: 1 << 20, segmentBytes });
  await Promise.all(payloads.map((p) => queue.append(Buffer.from(p))));
  await queue.close();
}

describe("disk queue", () => {
  test("concurrent appends come back in order and survive a reopen", async () => {
    const dir = await tempDir();
    const payloads = Array.from({ length: 50 }, (_, i) => `record-${i}`);
    await filled(dir, payloads);
    const { queue, report } = await DiskQueue.open({ dir, maxBytes: 1 << 20 });
    assert.deepEqual(await texts(queue), payloads);
    assert.deepEqual(report, { recovered: 50, tornBytes: 0, corruptSegments: 0 });
    await queue.close();
  });

  test("acknowledged records are not replayed after a reopen, the rest are", async () => {
    const dir = await tempDir();
    await filled(dir, ["a", "b", "c", "d"]);
    const first = await DiskQueue.open({ dir, maxBytes: 1 << 20 });
    await first.queue.ack(2);
    await first.queue.append(Buffer.from("e"));
    await first.queue.close();
    const { queue } = await DiskQueue.open({ dir, maxBytes: 1 << 20 });
    assert.deepEqual(await texts(queue), ["c", "d", "e"]);
    await queue.ack(3);
    await queue.close();
    const { queue: last } = await DiskQueue.open({ dir, maxBytes: 1 << 20 });
    assert.equal(last.length, 0);
    await last.close();
  });

  test("segments whose records are all acknowledged are deleted", async () => {
    const dir = await tempDir();
    const { queue } = await DiskQueue.open({ dir, maxBytes: 1 << 20, segmentBytes: 64 });
    for (let i = 0; i < 20; i++) await queue.append(Buffer.from(`payload-number-${i}`));
    const before = (await segments(dir)).length;
    assert.ok(before > 3, `expected several segments, got ${before}`);
    await queue.ack(20);
    await queue.append(Buffer.from("after"));
    await queue.ack(1);
    assert.ok((await segments(dir)).length <= 2);
    await queue.close();
  });

  test("a torn record at the end of a segment is ignored and earlier records are kept", async () => {
    const dir = await tempDir();
    await filled(dir, ["one", "two"]);
    const [segment] = await segments(dir);
    assert.ok(segment);
    const torn = frameRecord(Buffer.from("three-never-acknowledged")).subarray(0, 13);
    await appendFile(join(dir, segment), torn);
    const { queue, report } = await DiskQueue.open({ dir, maxBytes: 1 << 20 });
    assert.deepEqual(await texts(queue), ["one", "two"]);
    assert.equal(report.tornBytes, 13);
    await queue.append(Buffer.from("four"));
    await queue.close();
    const { queue: again } = await DiskQueue.open({ dir, maxBytes: 1 << 20 });
    assert.deepEqual(await texts(again), ["one", "two", "four"]);
    await again.close();
  });

  test("a record whose CRC does not match is detected and the records before it are kept", async () => {
    const dir = await tempDir();
    await filled(dir, ["alpha", "bravo", "charlie"]);
    const [segment] = await segments(dir);
    assert.ok(segment);
    const path = join(dir, segment);
    const bytes = await readFile(path);
    // Flip one byte inside the payload of the second record ("bravo").
    const secondPayload = 8 + "alpha".length + 8;
    bytes[secondPayload] = (bytes[secondPayload] ?? 0) ^ 0xff;
    await writeFile(path, bytes);
    const { queue, report } = await DiskQueue.open({ dir, maxBytes: 1 << 20 });
    assert.deepEqual(await texts(queue), ["alpha"]);
    assert.equal(report.corruptSegments, 1);
    await queue.close();
  });

  test("appends beyond the byte limit are refused, and accepted again once space is freed", async () => {
    const dir = await tempDir();
    const { queue } = await DiskQueue.open({ dir, maxBytes: 120, segmentBytes: 40 });
    // 38 bytes framed: three fit in 120, a fourth does not.
    const record = Buffer.alloc(30, 1);
    await queue.append(record);
    await queue.append(record);
    await queue.append(record);
    await assert.rejects(queue.append(record), QueueFullError);
    await queue.ack(3);
    await queue.append(record);
    assert.equal(queue.length, 1);
    await queue.close();
  });

  test("a queue filled to its limit and then emptied takes appends again, with default segments", async () => {
    const dir = await tempDir();
    const { queue } = await DiskQueue.open({ dir, maxBytes: 1024 * 1024 });
    const record = Buffer.alloc(16 * 1024, 1);
    let appended = 0;
    for (;;) {
      try {
        await queue.append(record);
        appended++;
      } catch (error) {
        assert.ok(error instanceof QueueFullError);
        break;
      }
    }
    await queue.ack(appended);
    await queue.append(record);
    assert.equal(queue.length, 1);
    await queue.close();
  });

  test("the cursor is read from the newer intact slot: a torn cursor write loses no record", async () => {
    const dir = await tempDir();
    await filled(dir, ["a", "b", "c", "d"]);
    const first = await DiskQueue.open({ dir, maxBytes: 1 << 20 });
    await first.queue.ack(1);
    await first.queue.ack(1);
    await first.queue.close();
    const slots = join(dir, "cursor.slots");
    assert.deepEqual(await texts((await DiskQueue.open({ dir, maxBytes: 1 << 20 })).queue), ["c", "d"]);
    // The second write went to slot 0; tearing it leaves slot 1, the cursor after the first ack.
    const handle = await open(slots, "r+");
    await handle.write(Buffer.from([0xde, 0xad]), 0, 2, 10);
    await handle.close();
    const { queue } = await DiskQueue.open({ dir, maxBytes: 1 << 20 });
    assert.deepEqual(await texts(queue), ["b", "c", "d"]);
    // The next write goes past the generation read back, so it is the one read after it.
    await queue.ack(3);
    await queue.close();
    assert.equal((await DiskQueue.open({ dir, maxBytes: 1 << 20 })).queue.length, 0);
  });

  test("the JSON cursor of an earlier version is read, then replaced by the slots", async () => {
    const dir = await tempDir();
    await filled(dir, ["one", "two", "three"]);
    const [segment] = await segments(dir);
    assert.ok(segment);
    const second = 8 + "one".length;
    await writeFile(join(dir, "cursor"), JSON.stringify({ segment: Number.parseInt(segment, 10), offset: second }));
    const { queue } = await DiskQueue.open({ dir, maxBytes: 1 << 20 });
    assert.deepEqual(await texts(queue), ["two", "three"]);
    await queue.ack(1);
    await queue.close();
    assert.ok(!(await readdir(dir)).includes("cursor"));
    assert.equal((await stat(join(dir, "cursor.slots"))).size > 0, true);
    assert.deepEqual(await texts((await DiskQueue.open({ dir, maxBytes: 1 << 20 })).queue), ["three"]);
  });

  test("peek serves the newest groups from memory, up to memoryBytes, and the older ones from disk", async () => {
    const dir = await tempDir();
    // Each record its own group of 5,008 bytes.
    const payloads = ["a", "b", "c", "d", "e"].map((letter) => letter.repeat(5000));
    const { queue } = await DiskQueue.open({ dir, maxBytes: 1 << 20, memoryBytes: 12_000 });
    for (const payload of payloads) await queue.append(payload);
    // Zeroes on disk: what comes back intact came from memory.
    const [segment] = await segments(dir);
    assert.ok(segment);
    await writeFile(join(dir, segment), Buffer.alloc(5 * 5008));
    assert.deepEqual(await firstLetters(queue), ["\u0000", "\u0000", "\u0000", "d", "e"]);
    // Acknowledged groups leave memory: the bound then holds newer ones.
    await queue.ack(5);
    await queue.append("f".repeat(5000));
    assert.deepEqual(await firstLetters(queue), ["f"]);
    await queue.close();
    const elsewhere = await tempDir();
    const { queue: none } = await DiskQueue.open({ dir: elsewhere, maxBytes: 1 << 20, memoryBytes: 0 });
    await none.append("g".repeat(5000));
    const [only] = await segments(elsewhere);
    assert.ok(only);
    await writeFile(join(elsewhere, only), Buffer.alloc(5008));
    assert.deepEqual(await firstLetters(none), ["\u0000"]);
    await none.close();
  });
});
