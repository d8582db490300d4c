import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { RetentionJob } from "../src/retention/retention-job.ts";
import { DAY_MS } from "../src/telemetry/rollups.ts";
import { TelemetryStore } from "../src/telemetry/telemetry-store.ts";
import type { Credentials } from "../src/tenants/bootstrap.ts";
import { TenantStore } from "../src/tenants/tenant-store.ts";
import { bootstrapTenant, startTestCloud, type TestCloud } from "./helpers.ts";

const NOW = Date.UTC(2026, 10, 29, 12, 0, 0);
const quiet = { info: () => undefined };

describe("telemetry retention", () => {
  let cloud: TestCloud;
  let acme: Credentials;
  let globex: Credentials;
  const ages = [400, 40, 5, 0];

  const hourlyBuckets = (tenantId: string) =>
    cloud.db.collection("telemetry_buckets").countDocuments({ tenantId, deviceId: "dev-1" });
  const rollupDocs = (tenantId: string, level: string) =>
    cloud.db.collection("telemetry_rollups").countDocuments({ tenantId, level });

  before(async () => {
    cloud = await startTestCloud();
    acme = await bootstrapTenant(cloud.db, "Acme", ["dev-1"]);
    globex = await bootstrapTenant(cloud.db, "Globex", ["dev-1"]);
    // Globex keeps raw samples 3 days and rollups 30; Acme has the defaults (30 and 365).
    await new TenantStore(cloud.db).setRetention(globex.tenantId, { rawDays: 3, rollupDays: 30 });
    const store = new TelemetryStore(cloud.db);
    for (const tenant of [acme, globex]) {
      await store.store(
        tenant.tenantId,
        ages.map((age, seq) => ({
          deviceId: "dev-1",
          batch: { v: 1, boot: 1, samples: [{ seq, ts: NOW - age * DAY_MS, m: { temperature: age } }] },
        })),
      );
    }
    await store.applyPending();
  });
  after(() => cloud?.close());

  test("two replicas run the job at once: one deletes, per organization's settings; the other skips", async () => {
    assert.equal(await hourlyBuckets(acme.tenantId), 4);
    const jobs = ["replica-a", "replica-b"].map(
      (holder) => new RetentionJob(cloud.db, quiet, { holder, now: () => NOW }),
    );
    const runs = await Promise.all(jobs.map((job) => job.runOnce()));
    assert.equal(runs.filter((run) => run === undefined).length, 1, "exactly one replica holds the job");
    const run = runs.find((r) => r !== undefined);
    assert.ok(run);
    // Acme: raw older than 30 days (400, 40) go; Globex: older than 3 days (400, 40, 5) go.
    assert.equal(run.buckets, 5);
    assert.equal(await hourlyBuckets(acme.tenantId), 2);
    assert.equal(await hourlyBuckets(globex.tenantId), 1);
    // Rollups: Acme keeps 40 days back (hour docs 40, 5, 0 days old); Globex keeps 30 days (5, 0).
    assert.equal(await rollupDocs(acme.tenantId, "1h"), 3);
    assert.equal(await rollupDocs(globex.tenantId, "1h"), 2);
    // A day-rollup document spans a calendar year and goes once wholly past the cutoff: Acme's cutoff
    // (365 days back) falls in 2025, so its 2025 document stays; Globex's (30 days back) does not.
    assert.equal(await rollupDocs(acme.tenantId, "1d"), 2);
    assert.equal(await rollupDocs(globex.tenantId, "1d"), 1);
  });

  test("a third replica in the same slot skips too", async () => {
    const holderRun = await new RetentionJob(cloud.db, quiet, { holder: "replica-c", now: () => NOW }).runOnce();
    assert.equal(holderRun, undefined);
  });
});
