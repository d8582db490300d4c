// The uplink forwarder with several requests in flight, over a real disk queue:
// records leave the queue in order and only once every request before theirs
// was answered, and a failed request is sent again with everything after it.
// The cloud is a scripted `ingest` that holds each request until the test
// answers it, so the order of answers is the test's to choose.

import assert from "node:assert/strict";
import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, test } from "node:test";
import type { IngestRequest, IngestResult } from "@kestrel/wire";
import { pino } from "pino";
import { GatewayMetrics } from "../src/metrics.ts";
import { CloudError } from "../src/uplink/cloud-client.ts";
import { DiskQueue } from "../src/uplink/disk-queue.ts";
import { UplinkForwarder } from "../src/uplink/forwarder.ts";
import { until } from "./until.ts";

interface Pending {
  seqs: number[];
  answer(): void;
  fail(): void;
}

/** A cloud whose answers the test gives, one request at a time. */
class ScriptedCloud {
  readonly pending: Pending[] = [];
  readonly delivered: number[][] = [];

  ingest(body: Buffer): Promise<IngestResult> {
    const request = JSON.parse(body.toString("utf8")) as IngestRequest;
    const seqs = (request.telemetry ?? []).map((item) => item.batch.samples[0]?.seq ?? -1);
    return new Promise((resolve, reject) => {
      this.pending.push({
        seqs,
        answer: () => {
          this.delivered.push(seqs);
          resolve({ accepted: seqs.length, rejected: [] });
        },
        fail: () => reject(new CloudError("unavailable", "cloud answered 503", true, 503)),
      });
    });
  }

  take(seqsOf: (pending: Pending) => boolean): Pending {
    const index = this.pending.findIndex(seqsOf);
    const [found] = this.pending.splice(index, 1);
    if (index < 0 || !found) throw new Error("no such request pending");
    return found;
  }
}

async function setUp(concurrency: number) {
  const dir = await mkdtemp(join(tmpdir(), "kestrel-forwarder-"));
  const { queue } = await DiskQueue.open({ dir, maxBytes: 1 << 20 });
  const cloud = new ScriptedCloud();
  const forwarder = new UplinkForwarder({
    cloud,
    queue,
    logger: pino({ level: "silent" }),
    metrics: new GatewayMetrics(),
    intervalMs: 10,
    maxBatches: 2,
    concurrency,
  });
  const telemetry = (seq: number) =>
    forwarder.enqueueTelemetry("dev-1", { v: 1, boot: 1, samples: [{ seq, ts: 1_764_000_000_000, m: { t: seq } }] });
  return { queue, cloud, forwarder, telemetry };
}

describe("uplink forwarder, several requests in flight", () => {
  test("records leave the queue in order, only once every earlier request was answered", async () => {
    const { queue, cloud, forwarder, telemetry } = await setUp(3);
    for (let seq = 0; seq < 6; seq++) await telemetry(seq);
    forwarder.start();
    await until(() => cloud.pending.length === 3 || undefined, "three requests in flight");
    // Each reads its records back from disk first, so they may reach the cloud in any order.
    assert.deepEqual(
      cloud.pending.map((p) => p.seqs).sort((a, b) => (a[0] ?? 0) - (b[0] ?? 0)),
      [
        [0, 1],
        [2, 3],
        [4, 5],
      ],
      "each request takes the records after the previous one's",
    );
    // Answered last-first: nothing may leave the queue before the first request is answered.
    cloud.take((p) => p.seqs[0] === 4).answer();
    cloud.take((p) => p.seqs[0] === 2).answer();
    await new Promise((resolve) => setTimeout(resolve, 50));
    assert.equal(queue.length, 6, "records wait for the requests before them");
    cloud.take((p) => p.seqs[0] === 0).answer();
    await until(() => queue.length === 0 || undefined, "queue emptied");
    assert.deepEqual(cloud.delivered.flat().sort(), [0, 1, 2, 3, 4, 5], "each record delivered exactly once");
    await forwarder.stop(100);
  });

  test("a failed request is sent again, with the requests after it; nothing is lost", async () => {
    const { queue, cloud, forwarder, telemetry } = await setUp(3);
    for (let seq = 0; seq < 6; seq++) await telemetry(seq);
    forwarder.start();
    await until(() => cloud.pending.length === 3 || undefined, "three requests in flight");
    cloud.take((p) => p.seqs[0] === 0).answer();
    cloud.take((p) => p.seqs[0] === 2).fail();
    cloud.take((p) => p.seqs[0] === 4).answer();
    await until(() => cloud.pending.length > 0 || undefined, "the retry");
    assert.equal(cloud.pending.length, 1, "after a failure one request probes the cloud");
    assert.deepEqual(cloud.pending[0]?.seqs, [2, 3], "the retry starts at the first record not removed");
    assert.equal(queue.length, 4, "only the records before the failure left the queue");
    for (;;) {
      await until(() => cloud.pending.length > 0 || queue.length === 0 || undefined, "next request or empty queue");
      const next = cloud.pending.shift();
      if (!next) break;
      next.answer();
    }
    const delivered = cloud.delivered.flat();
    assert.deepEqual([...new Set(delivered)].sort(), [0, 1, 2, 3, 4, 5], "every record delivered");
    assert.deepEqual(
      delivered.filter((seq) => seq >= 4),
      [4, 5, 4, 5],
      "the request answered after the failure is sent again (the cloud drops what it has)",
    );
    await forwarder.stop(100);
  });

  test("with one request at a time, the next waits for the answer", async () => {
    const { cloud, forwarder, telemetry } = await setUp(1);
    for (let seq = 0; seq < 4; seq++) await telemetry(seq);
    forwarder.start();
    await until(() => cloud.pending.length === 1 || undefined, "a request in flight");
    await new Promise((resolve) => setTimeout(resolve, 50));
    assert.equal(cloud.pending.length, 1);
    cloud.take(() => true).answer();
    await until(() => cloud.pending.length === 1 || undefined, "the next request");
    assert.deepEqual(cloud.pending[0]?.seqs, [2, 3]);
    cloud.take(() => true).answer();
    await forwarder.stop(100);
  });
});

test("records an earlier gateway queued (one JSON object each) are delivered like new ones", async () => {
  const dir = await mkdtemp(join(tmpdir(), "kestrel-forwarder-"));
  const { queue } = await DiskQueue.open({ dir, maxBytes: 1 << 20 });
  const batch = { v: 1 as const, boot: 1, samples: [{ seq: 7, ts: 1_764_000_000_000, m: { t: 7 } }] };
  const state = { v: 1, online: true };
  await queue.append(Buffer.from(JSON.stringify({ kind: "telemetry", deviceId: "dev-1", at: 5, batch })));
  await queue.append(Buffer.from(JSON.stringify({ kind: "state", deviceId: "dev-1", at: 6, state })));
  const requests: IngestRequest[] = [];
  const forwarder = new UplinkForwarder({
    cloud: {
      ingest: async (body) => {
        requests.push(JSON.parse(body.toString("utf8")));
        return { accepted: 1, rejected: [] };
      },
    },
    queue,
    logger: pino({ level: "silent" }),
    metrics: new GatewayMetrics(),
    intervalMs: 10,
    maxBatches: 10,
  });
  await forwarder.enqueueTelemetry("dev-2", { ...batch, boot: 2 }, 8);
  forwarder.start();
  await until(() => queue.length === 0 || undefined, "queue emptied");
  assert.deepEqual(requests, [
    {
      telemetry: [
        { deviceId: "dev-1", batch },
        { deviceId: "dev-2", batch: { ...batch, boot: 2 } },
      ],
      states: [{ deviceId: "dev-1", receivedAt: 6, state }],
    },
  ]);
  await forwarder.stop(100);
});

describe("uplink records", () => {
  test("a batch's own JSON is stored as it is, and a request carries those bytes", async () => {
    const { queue, cloud, forwarder } = await setUp(1);
    const batch = { v: 1 as const, boot: 2, samples: [{ seq: 9, ts: 1_764_000_000_000, m: { t: 1.5 } }] };
    // What the device sent: key order, spacing and "1.50" differ from JSON.stringify(batch).
    const json = Buffer.from(
      ' { "samples" : [ { "m": {"t": 1.50}, "ts": 1764000000000, "seq": 9 } ], "boot": 2, "v": 1 } ',
    );
    await forwarder.enqueueTelemetry("dev-1", batch, 1_764_000_000_123, json);
    await forwarder.enqueueTelemetry("dev-1", { ...batch, boot: 3 }, 1_764_000_000_124);
    const [own, serialised] = await queue.peek(2);
    assert.equal(own?.payload.toString(), `11764000000123 {"deviceId":"dev-1","batch":${json}}`);
    assert.equal(
      serialised?.payload.toString(),
      `11764000000124 {"deviceId":"dev-1","batch":${JSON.stringify({ ...batch, boot: 3 })}}`,
    );
    forwarder.start();
    await until(() => cloud.pending.length === 1 || undefined, "one request");
    cloud.take(() => true).answer();
    assert.deepEqual(cloud.delivered, [[9, 9]]);
    await forwarder.stop(100);
  });
});
