// A journal pass that fails midway (the database stalls between two of its writes) is applied again
// by the next pass, on top of what it wrote: the samples are stored once, and the per-device counts
// (stored, received again) come out as if the first attempt had never happened.

import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import type { Collection, Db } from "mongodb";
import { connectDb, type Database } from "../src/storage/connect.ts";
import { type EmbeddedFerretDb, startEmbeddedFerretDb } from "../src/storage/embedded-ferretdb.ts";
import { TelemetryStore } from "../src/telemetry/telemetry-store.ts";
import { batch } from "./helpers.ts";

// The stores alone, without an API: its periodic pass would apply the journal alongside the
// test's own passes (a proxied database has a pass queue of its own).
let dir: string;
let ferret: EmbeddedFerretDb;
let database: Database;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), "kestrel-replay-"));
  ferret = await startEmbeddedFerretDb({ dataDir: join(dir, "ferretdb") });
  database = await connectDb(ferret.uri, "replay");
});
after(async () => {
  await database?.close();
  await ferret?.stop();
  await rm(dir, { recursive: true, force: true });
});

/** The database, except that the first bulk write to `collection` fails, as a stalled database would. */
function failingOnce(db: Db, collection: string): Db {
  let failed = false;
  return new Proxy(db, {
    get(target, property, receiver) {
      if (property !== "collection") return Reflect.get(target, property, receiver);
      return (name: string) => {
        const real = target.collection(name);
        if (name !== collection) return real;
        return new Proxy(real, {
          get(inner: Collection, innerProperty, innerReceiver) {
            if (innerProperty === "bulkWrite" && !failed) {
              return async () => {
                failed = true;
                throw new Error(`${collection}: the database did not answer`);
              };
            }
            return Reflect.get(inner, innerProperty, innerReceiver);
          },
        });
      };
    },
  });
}

const T0 = Date.UTC(2026, 10, 29, 10, 0, 0);

for (const [failing, after] of [
  ["telemetry_latest", "the buckets"],
  ["devices", "the counts"],
] as const) {
  test(`a pass that failed after writing ${after} is applied again without counting twice`, async () => {
    const tenantId = `t-${failing}`;
    const good = new TelemetryStore(database.db);
    // Earlier samples, applied: a repeat of one of them below is a real duplicate.
    await good.store(tenantId, [{ deviceId: "dev-1", batch: batch(1, 0, 3, T0) }]);
    await good.applyPending();

    const broken = new TelemetryStore(failingOnce(database.db, failing));
    await broken.store(tenantId, [
      { deviceId: "dev-1", batch: batch(1, 2, 5, T0 + 2_000) },
      { deviceId: "dev-2", batch: batch(1, 0, 4, T0) },
    ]);
    await assert.rejects(broken.applyPending(), /did not answer/);
    await good.applyPending();

    const latest = await good.readLatest(tenantId, ["dev-1", "dev-2"], 10);
    assert.deepEqual(
      latest.map(({ deviceId, samples }) => ({ deviceId, samples })),
      [
        { deviceId: "dev-1", samples: { stored: 7, duplicates: 1 } },
        { deviceId: "dev-2", samples: { stored: 4, duplicates: 0 } },
      ],
    );
    const samples = await good.read(tenantId, "dev-1", T0, T0 + 60_000);
    assert.deepEqual(
      samples.map((sample) => sample.seq),
      [0, 1, 2, 3, 4, 5, 6],
    );
  });
}
