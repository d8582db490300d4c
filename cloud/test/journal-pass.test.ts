// How much of the journal one pass applies: a backlog of many small ingest requests in one pass (its
// writes grow with the devices it touches, so a large fleet's backlog is caught up, not fallen behind
// for good), and never more than PASS_SAMPLES samples at once (its memory); and when the periodic
// pass runs beside a burst of ingest: after it, or APPLY_DEFER_MAX_MS into it.

import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { connectDb, type Database } from "../src/storage/connect.ts";
import { type EmbeddedFerretDb, startEmbeddedFerretDb } from "../src/storage/embedded-ferretdb.ts";
import {
  APPLY_CONNECTIONS,
  APPLY_DEFER_MAX_MS,
  INGEST_QUIET_MS,
  PASS_SAMPLES,
  TelemetryStore,
} from "../src/telemetry/telemetry-store.ts";
import { batch } from "./helpers.ts";

// The store alone, without an API whose periodic pass would apply the journal alongside the test's.
let dir: string;
let ferret: EmbeddedFerretDb;
let database: Database;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), "kestrel-journal-pass-"));
  ferret = await startEmbeddedFerretDb({ dataDir: join(dir, "ferretdb") });
  database = await connectDb(ferret.uri, "journal_pass");
});
after(async () => {
  await database?.close();
  await ferret?.stop();
  await rm(dir, { recursive: true, force: true });
});

const T0 = Date.UTC(2026, 10, 29, 10, 0, 0);

/** Applies the journal; answers how many journal documents each pass held. */
async function passes(telemetry: TelemetryStore): Promise<number[]> {
  const held: number[] = [];
  const stop = TelemetryStore.observe(database.db, async ({ journalledAt }) => {
    held.push(journalledAt.length);
  });
  try {
    await telemetry.applyPending();
  } finally {
    stop();
  }
  return held;
}

test("a backlog of 120 small ingest requests is applied in one pass, every sample once", async () => {
  const telemetry = new TelemetryStore(database.db);
  for (let i = 0; i < 120; i++) {
    await telemetry.store("t1", [{ deviceId: `dev-${i % 30}`, batch: batch(1, i * 5, 5, T0 + i * 5_000) }]);
  }
  assert.deepEqual(await passes(telemetry), [120]);
  const latest = await telemetry.readLatest("t1", undefined, 100);
  assert.equal(latest.length, 30);
  for (const device of latest) assert.deepEqual(device.samples, { stored: 20, duplicates: 0 });
});

test("a pass holds at most PASS_SAMPLES samples: the request that would pass it waits for the next", async () => {
  const telemetry = new TelemetryStore(database.db);
  const perRequest = Math.floor((PASS_SAMPLES * 5) / 12);
  for (let i = 0; i < 3; i++) {
    await telemetry.store("t2", [{ deviceId: "big", batch: batch(1, i * perRequest, perRequest, T0) }]);
  }
  assert.deepEqual(await passes(telemetry), [2, 1]);
  const [big] = await telemetry.readLatest("t2", ["big"], 1);
  assert.deepEqual(big?.samples, { stored: 3 * perRequest, duplicates: 0 });
});

test("a pass holds at most its share of the connection pool, leaving the rest to requests", async () => {
  const telemetry = new TelemetryStore(database.db);
  // 400 devices, each with samples in two hours: some 1,600 point reads and 1,000 writes in one pass.
  for (let i = 0; i < 40; i++) {
    const batches = Array.from({ length: 10 }, (_, d) => ({
      deviceId: `fleet-${i * 10 + d}`,
      batch: batch(1, 0, 4, T0 + 3_600_000 - 2_000),
    }));
    await telemetry.store("t3", batches);
  }
  const started = new Set<number>();
  let most = 0;
  const onStart = ({ requestId, commandName }: { requestId: number; commandName: string }) => {
    if (commandName === "hello" || commandName === "isMaster") return;
    started.add(requestId);
    most = Math.max(most, started.size);
  };
  const onEnd = ({ requestId }: { requestId: number }) => started.delete(requestId);
  database.client.on("commandStarted", onStart);
  database.client.on("commandSucceeded", onEnd);
  database.client.on("commandFailed", onEnd);
  try {
    assert.deepEqual(await passes(telemetry), [40]);
  } finally {
    database.client.off("commandStarted", onStart);
    database.client.off("commandSucceeded", onEnd);
    database.client.off("commandFailed", onEnd);
  }
  // Reached (the pass does run that many at once), never passed.
  assert.equal(most, APPLY_CONNECTIONS, `at most ${APPLY_CONNECTIONS} commands in flight, saw ${most}`);
  const latest = await telemetry.readLatest("t3", undefined, 1_000);
  assert.equal(latest.length, 400);
  for (const device of latest) assert.deepEqual(device.samples, { stored: 4, duplicates: 0 });
});

test("the periodic pass waits out a burst of ingest, until the journal holds a document APPLY_DEFER_MAX_MS old", async () => {
  // A database of its own: the burst clock is per database, and this test sets it.
  const own = await connectDb(ferret.uri, "journal_pass_bursts");
  let now = 1_000_000;
  const telemetry = new TelemetryStore(own.db, { now: () => now });
  const held: number[] = [];
  const stop = TelemetryStore.observe(own.db, async ({ journalledAt }) => {
    held.push(journalledAt.length);
  });
  let seq = 0;
  const ingest = () => telemetry.store("t4", [{ deviceId: "burst", batch: batch(1, seq++, 1, T0 + seq * 1_000) }]);
  try {
    const burstStart = now;
    const step = INGEST_QUIET_MS / 2;
    // Requests closer together than INGEST_QUIET_MS, the pass called between them: nothing applied
    // until APPLY_DEFER_MAX_MS after the first.
    for (; now - burstStart < APPLY_DEFER_MAX_MS; now += step) {
      await ingest();
      await telemetry.applyBetweenBursts();
      assert.deepEqual(held, [], `applied ${now - burstStart} ms into the burst`);
    }
    await ingest();
    await telemetry.applyBetweenBursts();
    const first = APPLY_DEFER_MAX_MS / step + 1;
    assert.deepEqual(held, [first], "the burst's samples are applied once the bound is reached");

    // A new burst: its clock starts at its first sample, and a pause ends the wait.
    now += step;
    await ingest();
    now += step;
    await ingest();
    await telemetry.applyBetweenBursts();
    assert.deepEqual(held, [first], "a new burst is waited out again");
    now += INGEST_QUIET_MS;
    await telemetry.applyBetweenBursts();
    assert.deepEqual(held, [first, 2], "applied at the first pause");

    // Reads do not wait for the burst to end.
    await ingest();
    await telemetry.settle();
    assert.deepEqual(held, [first, 2, 1]);

    // Behind (the journal holds a document APPLY_DEFER_MAX_MS old, here another replica's): no wait.
    const elsewhere = new TelemetryStore(own.db, { now: () => now - APPLY_DEFER_MAX_MS });
    await elsewhere.store("t4", [{ deviceId: "burst", batch: batch(1, seq++, 1, T0 + seq * 1_000) }]);
    await ingest();
    await telemetry.applyBetweenBursts();
    assert.deepEqual(held, [first, 2, 1, 2]);
    const [device] = await telemetry.readLatest("t4", ["burst"], 1);
    assert.deepEqual(device?.samples, { stored: seq, duplicates: 0 });
  } finally {
    stop();
    await own.close();
  }
});

test("the periodic pass does not wait out a burst for an organization somebody waits on (its alert rules)", async () => {
  const own = await connectDb(ferret.uri, "journal_pass_prompt");
  let now = 2_000_000;
  const telemetry = new TelemetryStore(own.db, { now: () => now });
  const held: string[][] = [];
  const stopObserving = TelemetryStore.observe(own.db, async ({ devices }) => {
    held.push(devices.map(({ tenantId }) => tenantId));
  });
  const asked: string[][] = [];
  const stopPrompting = TelemetryStore.promptWhen(own.db, async (tenantIds) => {
    asked.push(tenantIds);
    return tenantIds.includes("watched");
  });
  let seq = 0;
  const ingest = (tenantId: string) =>
    telemetry.store(tenantId, [{ deviceId: "d", batch: batch(1, seq++, 1, T0 + seq * 1_000) }]);
  try {
    await ingest("quiet");
    now += INGEST_QUIET_MS / 2;
    await telemetry.applyBetweenBursts();
    assert.deepEqual(held, [], "nobody waits on 'quiet': the burst is waited out");
    await ingest("watched");
    now += INGEST_QUIET_MS / 2;
    await telemetry.applyBetweenBursts();
    assert.deepEqual(held, [["quiet", "watched"]], "'watched' has rules: applied in the burst");
    assert.deepEqual(asked.slice(0, 2), [["quiet"], ["quiet", "watched"]]);
    await ingest("quiet");
    now += INGEST_QUIET_MS / 2;
    await telemetry.applyBetweenBursts();
    assert.deepEqual(asked.at(-1), ["quiet"], "only what was journalled since the last pass is asked about");
    assert.equal(held.length, 1);
  } finally {
    stopObserving();
    stopPrompting();
    await own.close();
  }
});
