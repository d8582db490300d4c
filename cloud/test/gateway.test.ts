import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import type { Credentials } from "../src/tenants/bootstrap.ts";
import { batch, bearer, bootstrapTenant, ingest, login, startTestCloud, type TestCloud } from "./helpers.ts";

const T0 = Date.UTC(2026, 10, 29, 10, 0, 0);

describe("gateway API", () => {
  let cloud: TestCloud;
  let acme: Credentials;
  let globex: Credentials;
  let acmeSession: string;

  before(async () => {
    cloud = await startTestCloud();
    acme = await bootstrapTenant(cloud.db, "Acme", ["dev-1", "dev-2"]);
    globex = await bootstrapTenant(cloud.db, "Globex", ["gx-1"]);
    acmeSession = await login(cloud.app, acme.admin.email);
  });
  after(() => cloud?.close());

  const deviceAuth = (key: string | undefined, payload: object) =>
    cloud.app.inject({
      method: "POST",
      url: "/api/gateway/v1/device-auth",
      headers: key === undefined ? {} : bearer(key),
      payload,
    });

  const rawHistory = async (deviceId: string) => {
    const response = await cloud.app.inject({
      method: "GET",
      url: `/api/devices/${deviceId}/telemetry?from=${T0 - 3_600_000}&to=${T0 + 7_200_000}&resolution=raw`,
      headers: bearer(acmeSession),
    });
    assert.equal(response.statusCode, 200, response.body);
    return response.json().samples as Array<{ boot: number; seq: number; ts: number; m: Record<string, number> }>;
  };

  /** The device's sample counts, kept as the journal is applied. */
  const sampleCounts = async (deviceId: string) => {
    const response = await cloud.app.inject({
      method: "GET",
      url: `/api/telemetry/latest?deviceIds=${deviceId}`,
      headers: bearer(acmeSession),
    });
    assert.equal(response.statusCode, 200, response.body);
    return response.json().items[0]?.samples as { stored: number; duplicates: number } | undefined;
  };

  describe("device-auth", () => {
    test("the right token answers 200 with the device's tenant", async () => {
      const [device] = acme.devices;
      assert.ok(device);
      const response = await deviceAuth(acme.gatewayKey, device);
      assert.equal(response.statusCode, 200);
      assert.deepEqual(response.json(), { deviceId: device.deviceId, tenantId: acme.tenantId });
    });

    test("a wrong token, an unknown device and another tenant's device all answer 401 device_auth_failed", async () => {
      const [acmeDevice] = acme.devices;
      const [globexDevice] = globex.devices;
      assert.ok(acmeDevice && globexDevice);
      for (const payload of [
        { deviceId: acmeDevice.deviceId, token: "wrong-token" },
        { deviceId: acmeDevice.deviceId, token: globexDevice.token },
        { deviceId: "dev-404", token: acmeDevice.token },
        globexDevice,
      ]) {
        const response = await deviceAuth(acme.gatewayKey, payload);
        assert.equal(response.statusCode, 401, JSON.stringify(payload));
        assert.equal(response.json().code, "device_auth_failed");
      }
    });

    test("a missing or unknown gateway key answers 401 gateway_auth_failed", async () => {
      const [device] = acme.devices;
      for (const key of [undefined, "kgw_not-a-real-key", acme.devices[1]?.token ?? ""]) {
        const response = await deviceAuth(key, device ?? {});
        assert.equal(response.statusCode, 401);
        assert.equal(response.json().code, "gateway_auth_failed");
        assert.equal(response.headers["content-type"], "application/problem+json; charset=utf-8");
      }
    });
  });

  describe("ingest", () => {
    test("a valid batch is stored and counted as accepted", async () => {
      const response = await ingest(cloud.app, acme.gatewayKey, {
        telemetry: [{ deviceId: "dev-1", batch: batch(1, 0, 5, T0) }],
        states: [],
      });
      assert.equal(response.statusCode, 200, response.body);
      assert.deepEqual(response.json(), { accepted: 5, rejected: [] });
      const samples = await rawHistory("dev-1");
      assert.deepEqual(
        samples,
        batch(1, 0, 5, T0).samples.map((s) => ({ boot: 1, ...s })),
      );
      assert.deepEqual(await sampleCounts("dev-1"), { stored: 5, duplicates: 0 });
    });

    test("the same batch again is stored once and counted as duplicates", async () => {
      const again = await ingest(cloud.app, acme.gatewayKey, {
        telemetry: [{ deviceId: "dev-1", batch: batch(1, 0, 5, T0) }],
        states: [],
      });
      assert.deepEqual(again.json(), { accepted: 5, rejected: [] }, "taken: duplicates are found when applied");
      assert.deepEqual(await sampleCounts("dev-1"), { stored: 5, duplicates: 5 });
      // Overlapping retry: 3 old samples, 2 new, and one repeated inside the request.
      const overlap = batch(1, 2, 5, T0 + 2000);
      overlap.samples.push(overlap.samples[4] as (typeof overlap.samples)[number]);
      const mixed = await ingest(cloud.app, acme.gatewayKey, { telemetry: [{ deviceId: "dev-1", batch: overlap }] });
      assert.deepEqual(mixed.json(), { accepted: 6, rejected: [] });
      const samples = await rawHistory("dev-1");
      assert.deepEqual(
        samples.map((s) => s.seq),
        [0, 1, 2, 3, 4, 5, 6],
      );
      assert.deepEqual(await sampleCounts("dev-1"), { stored: 7, duplicates: 9 });
    });

    test("a sample of a new boot with a reused seq is a different sample", async () => {
      const response = await ingest(cloud.app, acme.gatewayKey, {
        telemetry: [
          { deviceId: "dev-2", batch: batch(1, 0, 2, T0) },
          { deviceId: "dev-2", batch: batch(2, 0, 2, T0 + 60_000) },
        ],
      });
      assert.deepEqual(response.json(), { accepted: 4, rejected: [] });
      assert.deepEqual(
        (await rawHistory("dev-2")).map((s) => `${s.boot}:${s.seq}`),
        ["1:0", "1:1", "2:0", "2:1"],
      );
      assert.deepEqual(await sampleCounts("dev-2"), { stored: 4, duplicates: 0 });
    });

    test("a malformed body is a 400 problem", async () => {
      for (const payload of [
        { telemetry: "nope" },
        { telemetry: [{ deviceId: "dev-1" }] },
        { telemetry: [], extra: 1 },
        { states: [{ deviceId: "dev-1", receivedAt: "yesterday", state: { v: 1, online: true } }] },
        { telemetry: Array.from({ length: 501 }, () => ({ deviceId: "dev-1", batch: batch(1, 0, 1, T0) })) },
      ]) {
        const response = await ingest(cloud.app, acme.gatewayKey, payload);
        assert.equal(response.statusCode, 400, JSON.stringify(payload).slice(0, 80));
        assert.equal(response.headers["content-type"], "application/problem+json; charset=utf-8");
        const problem = response.json();
        assert.equal(problem.status, 400);
        assert.equal(problem.code, "invalid_request");
        assert.equal(typeof problem.detail, "string");
      }
      const notJson = await cloud.app.inject({
        method: "POST",
        url: "/api/gateway/v1/ingest",
        headers: { ...bearer(acme.gatewayKey), "content-type": "application/json" },
        payload: "{not json",
      });
      assert.equal(notJson.statusCode, 400);
      assert.equal(notJson.json().code, "invalid_json");
    });

    test("bad items are rejected one by one with the wire contract's codes; the rest is stored", async () => {
      const bad = batch(1, 100, 2, T0 + 600_000);
      const response = await ingest(cloud.app, acme.gatewayKey, {
        telemetry: [
          { deviceId: "gx-1", batch: batch(1, 0, 1, T0) },
          { deviceId: "dev-1", batch: { ...bad, v: 2 } },
          { deviceId: "dev-1", batch: { ...bad, samples: [{ seq: 100, ts: 5, m: { temperature: 1 } }] } },
          { deviceId: "bad id!", batch: bad },
          { deviceId: "dev-1", batch: bad },
        ],
        states: [{ deviceId: "dev-1", receivedAt: T0, state: { v: 1, online: "yes" } }],
      });
      assert.equal(response.statusCode, 200);
      const body = response.json();
      assert.equal(body.accepted, 2);
      assert.deepEqual(
        body.rejected.map((r: { kind: string; index: number; code: string }) => `${r.kind}#${r.index}:${r.code}`),
        [
          "telemetry#0:unknown_device",
          "telemetry#1:unsupported_version",
          "telemetry#2:invalid_sample",
          "telemetry#3:invalid_device_id",
          "state#0:invalid_state",
        ],
      );
      assert.equal((await rawHistory("dev-1")).filter((s) => s.seq >= 100).length, 2);
    });

    test("a device of another tenant is rejected and nothing is stored for it", async () => {
      const response = await ingest(cloud.app, acme.gatewayKey, {
        telemetry: [{ deviceId: "gx-1", batch: batch(1, 0, 3, T0) }],
        states: [{ deviceId: "gx-1", receivedAt: T0, state: { v: 1, online: true } }],
      });
      assert.equal(response.json().accepted, 0);
      assert.deepEqual(
        response.json().rejected.map((r: { code: string; deviceId: string }) => [r.deviceId, r.code]),
        [
          ["gx-1", "unknown_device"],
          ["gx-1", "unknown_device"],
        ],
      );
      const globexSession = await login(cloud.app, globex.admin.email);
      const device = await cloud.app.inject({
        method: "GET",
        url: "/api/devices/gx-1",
        headers: bearer(globexSession),
      });
      assert.equal(device.json().online, false);
      assert.equal(device.json().latest, null);
      assert.equal(await cloud.db.collection("telemetry_buckets").countDocuments({ tenantId: globex.tenantId }), 0);
    });

    test("states and telemetry update the device view; an older state does not override a newer one", async () => {
      const state = {
        v: 1,
        online: true,
        fw: "0.1.0",
        boot: 2,
        uptime: 12,
        heap: 20480,
        rssi: -60,
        reset: "watchdog",
        mode: "safe",
      };
      await ingest(cloud.app, acme.gatewayKey, {
        states: [
          { deviceId: "dev-2", receivedAt: T0 + 120_000, state },
          { deviceId: "dev-2", receivedAt: T0 + 60_000, state: { v: 1, online: false } },
        ],
      });
      const response = await cloud.app.inject({
        method: "GET",
        url: "/api/devices/dev-2",
        headers: bearer(acmeSession),
      });
      const { createdAt, ...view } = response.json();
      assert.equal(typeof createdAt, "number");
      assert.deepEqual(view, {
        deviceId: "dev-2",
        name: "dev-2",
        tags: [],
        groups: [],
        metadata: {},
        online: true,
        lastSeen: T0 + 120_000,
        fw: "0.1.0",
        boot: 2,
        reset: "watchdog",
        mode: "safe",
        uptime: 12,
        heap: 20480,
        rssi: -60,
        dropped: null,
        plugins: [],
        latest: { ts: T0 + 61_000, m: { temperature: 20.1, pressure: 100_001 } },
      });

      await ingest(cloud.app, acme.gatewayKey, {
        states: [{ deviceId: "dev-2", receivedAt: T0 + 180_000, state: { v: 1, online: false } }],
      });
      const offline = await cloud.app.inject({ method: "GET", url: "/api/devices", headers: bearer(acmeSession) });
      const dev2 = offline.json().items.find((d: { deviceId: string }) => d.deviceId === "dev-2");
      assert.equal(dev2.online, false);
      assert.equal(dev2.fw, "0.1.0", "a last will keeps what the device reported before");
      assert.equal(dev2.lastSeen, T0 + 120_000, "a last will is the broker speaking, not the device: lastSeen stays");

      // A state claiming to come from the future counts as now at the latest.
      const future = Date.now() + 3_600_000;
      await ingest(cloud.app, acme.gatewayKey, {
        states: [{ deviceId: "dev-2", receivedAt: future, state: { v: 1, online: true } }],
      });
      const seen = (
        await cloud.app.inject({ method: "GET", url: "/api/devices/dev-2", headers: bearer(acmeSession) })
      ).json();
      assert.ok(seen.lastSeen <= Date.now() && seen.lastSeen > future - 7_200_000, `${seen.lastSeen}`);
    });
  });
});
