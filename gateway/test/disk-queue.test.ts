// The durable uplink queue on its own: what is appended comes back in order
// after a restart until acknowledged, a torn tail or a corrupted record does
// not take earlier records with it, and a full queue refuses appends.

import assert from "node:assert/strict";
import { appendFile, mkdtemp, readdir, readFile, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, test } from "node:test";
import { DiskQueue, frameRecord, QueueFullError } from "../src/uplink/disk-queue.ts";

const tempDir = () => mkdtemp(join(tmpdir(), "kestrel-queue-"));
const texts = async (queue: DiskQueue) => (await queue.peek(Number.MAX_SAFE_INTEGER)).map((r) => r.payload.toString());
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
});
