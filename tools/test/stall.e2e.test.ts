// A stalled database mid-stream: FerretDB is stopped (SIGSTOP) while a fleet of devices publishes
// over MQTT/TLS through the real gateway to the real cloud. Meanwhile the cloud answers 503 problem
// details quickly (health within its deadline), the gateway keeps acknowledging onto its disk queue,
// a device the cloud accepted before reconnects on that verdict and an unknown one is told to retry.
// Resumed (SIGCONT), everything drains by itself and every acknowledged sample is stored exactly once.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { connectAsync } from "mqtt";
import { printReport } from "../src/fleet/cli.ts";
import { FleetRun } from "../src/fleet/fleet.ts";
import { type Platform, startPlatform } from "../src/platform.ts";
import { silent, tempDir, until } from "./helpers.ts";

const DEVICES = 100;
const PUBLISH_MS = 30_000;
const STALL_AT_MS = 8_000;
const STALL_MS = 12_000;
/** The cloud's own deadlines are 1-1.5 s; this leaves room for a loaded machine, not for a hang. */
const QUICKLY_MS = 4_000;
// The gateway's verdict cache must have run out for a reconnect during the stall to ask the cloud (and
// fall back on the earlier verdict); this file runs in its own process.
process.env.AUTH_CACHE_TTL_MS = "1000";

async function timedGet(url: string, token?: string) {
  const started = performance.now();
  const response = await fetch(url, {
    headers: token ? { authorization: `Bearer ${token}` } : {},
    signal: AbortSignal.timeout(30_000),
  });
  const body = await response.json();
  return { ms: performance.now() - started, status: response.status, type: response.headers.get("content-type"), body };
}

describe("the database stalls mid-stream and comes back", () => {
  let platform: Platform;
  let token: string;

  before(async () => {
    platform = await startPlatform({
      dataDir: await tempDir("stall"),
      deviceCount: 0,
      logger: silent,
    });
    const login = await fetch(`${platform.cloudUrl}/api/auth/login`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(platform.credentials.admin),
    });
    token = ((await login.json()) as { token: string }).token;
  });
  after(async () => {
    if (platform?.databasePid) {
      try {
        process.kill(platform.databasePid, "SIGCONT");
      } catch {
        // already gone
      }
    }
    await platform?.stop();
  });

  test("503 quickly while stopped, acknowledged data kept on the gateway's disk, exactly once after", async () => {
    const pid = platform.databasePid;
    assert.ok(pid, "the platform runs its own FerretDB");
    const createDevice = async (deviceId: string) => {
      const response = await fetch(`${platform.cloudUrl}/api/devices`, {
        method: "POST",
        headers: { "content-type": "application/json", authorization: `Bearer ${token}` },
        body: JSON.stringify({ deviceId }),
      });
      assert.equal(response.status, 201);
      return ((await response.json()) as { token: string }).token;
    };
    // One device connects before the stall (the cloud says yes), one never has.
    const known = { deviceId: "known-1", token: await createDevice("known-1") };
    const stranger = { deviceId: "stranger-1", token: await createDevice("stranger-1") };
    const mqttOptions = (device: { deviceId: string; token: string }) => ({
      clientId: device.deviceId,
      username: device.deviceId,
      password: device.token,
      ca: platform.tls.ca,
      reconnectPeriod: 0,
      connectTimeout: 10_000,
    });
    await (await connectAsync(platform.mqttUrl, mqttOptions(known))).endAsync();

    const run = await FleetRun.prepare({
      cloudUrl: platform.cloudUrl,
      mqttUrl: platform.mqttUrl,
      ca: platform.tls.ca,
      admin: platform.credentials.admin,
      devices: DEVICES,
      samplesPerBatch: 5,
      intervalMs: 1_000,
      durationMs: PUBLISH_MS,
      idPrefix: "stall",
      connectPerSecond: 100,
      settleTimeoutMs: 120_000,
      log: (line) => process.stderr.write(`fleet: ${line}\n`),
    });
    const publishing = run.publish();
    try {
      await new Promise((resolve) => setTimeout(resolve, STALL_AT_MS));
      process.kill(pid, "SIGSTOP");
      const stalledAt = Date.now();
      try {
        const ackedAtStall = run.batchesAcked;
        // Let in-flight work notice, then every answer must come quickly.
        await new Promise((resolve) => setTimeout(resolve, 2_000));
        const health = await timedGet(`${platform.cloudUrl}/api/health`);
        assert.equal(health.status, 503);
        assert.equal(health.type, "application/problem+json; charset=utf-8");
        assert.equal((health.body as { code: string }).code, "database_unavailable");
        assert.ok(health.ms < QUICKLY_MS, `health answered in ${health.ms.toFixed(0)} ms`);
        const ready = await timedGet(`${platform.cloudUrl}/readyz`);
        assert.equal(ready.status, 503);
        assert.ok(ready.ms < QUICKLY_MS, `readyz answered in ${ready.ms.toFixed(0)} ms`);
        for (const path of ["/api/devices?limit=25", "/api/devices/known-1", "/api/telemetry/latest?limit=10"]) {
          const answer = await timedGet(`${platform.cloudUrl}${path}`, token);
          assert.equal(answer.status, 503, `${path}: ${JSON.stringify(answer.body)}`);
          assert.equal((answer.body as { code: string }).code, "database_unavailable");
          assert.ok(answer.ms < QUICKLY_MS, `${path} answered in ${answer.ms.toFixed(0)} ms`);
        }

        // The gateway keeps acknowledging: onto its disk queue, which grows.
        await until(
          async () => (run.batchesAcked > ackedAtStall + DEVICES ? true : undefined),
          "acknowledgements during the stall",
        );
        assert.ok(platform.gateway.forwarder.depth > 0, "undelivered batches wait on the gateway's disk");

        // Device authentication degrades: known device in on its earlier verdict, unknown told to retry.
        const again = await connectAsync(platform.mqttUrl, mqttOptions(known));
        await again.endAsync();
        await assert.rejects(connectAsync(platform.mqttUrl, mqttOptions(stranger)), /Server unavailable/);
        const metrics = await (await fetch(`http://127.0.0.1:${platform.gateway.httpPort}/metrics`)).text();
        assert.match(metrics, /kestrel_gateway_auth_stale_admissions_total [1-9]/);

        await new Promise((resolve) => setTimeout(resolve, Math.max(0, stalledAt + STALL_MS - Date.now())));
      } finally {
        process.kill(pid, "SIGCONT");
      }

      // No restart: the cloud answers again by itself, and everything drains.
      await until(
        async () => ((await timedGet(`${platform.cloudUrl}/api/health`)).status === 200 ? true : undefined),
        "health",
      );
      await publishing;
      const report = await run.finish();
      printReport(report, (line) => process.stderr.write(`fleet: ${line}\n`));
      await until(async () => (platform.gateway.forwarder.depth === 0 ? true : undefined), "gateway queue drained");
      assert.equal(report.connected, DEVICES);
      assert.equal(report.batchesAcked, report.batchesSent, "every batch was acknowledged, stall or not");
      assert.ok(report.samplesAcked >= DEVICES * 5 * 20, `samples acknowledged: ${report.samplesAcked}`);
      assert.equal(report.missing, 0, "acknowledged samples missing");
      assert.equal(report.duplicated, 0, "samples stored twice");
      assert.equal(report.counterMismatches, 0, "devices whose stored counter disagrees with their history");
      // The stranger can come in now that the cloud answers.
      await (await connectAsync(platform.mqttUrl, mqttOptions(stranger))).endAsync();
    } finally {
      await run.close();
    }
  });
});
