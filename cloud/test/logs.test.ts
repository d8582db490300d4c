// Device logs in the cloud: ingested from the gateway (validated per batch, deduplicated on
// boot and seq), kept per device within a cap, and read back newest first through
// GET /api/devices/{id}/logs with level, since and limit, inside the caller's organization only.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import type { LogRecord } from "@kestrel/wire";
import { LogStore } from "../src/logs/log-store.ts";
import type { Credentials } from "../src/tenants/bootstrap.ts";
import { addMember, bearer, bootstrapTenant, ingest, login, startTestCloud, type TestCloud } from "./helpers.ts";

const T0 = Date.UTC(2026, 10, 29, 10, 0, 0);

function record(boot: number, seq: number, level: string, msg: string, fields: object = {}) {
  return { boot, seq, ts: T0 + boot * 60_000 + seq * 1000, level, tag: "main", msg, ...fields };
}

describe("device logs", () => {
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

  const readLogs = (deviceId: string, query = "", session = acmeSession) =>
    cloud.app.inject({ method: "GET", url: `/api/devices/${deviceId}/logs${query}`, headers: bearer(session) });

  test("ingested records come back newest first with their fields, once each however often sent", async () => {
    const logs = {
      logs: [
        {
          deviceId: "dev-1",
          receivedAt: T0 + 5_000,
          batch: {
            v: 1,
            records: [
              record(1, 0, "info", "boot", { reset: "power-on" }),
              record(1, 1, "warn", "bmp280 read failed", { failures: 1, retry: true }),
            ],
          },
        },
        {
          deviceId: "dev-1",
          receivedAt: T0 + 70_000,
          batch: { v: 1, dropped: 3, records: [record(2, 0, "error", "watchdog", { subsystem: "sampling" })] },
        },
      ],
    };
    for (let attempt = 0; attempt < 2; attempt++) {
      const response = await ingest(cloud.app, acme.gatewayKey, logs);
      assert.equal(response.statusCode, 200, response.body);
      assert.deepEqual(response.json().rejected, []);
    }
    const response = await readLogs("dev-1");
    assert.equal(response.statusCode, 200, response.body);
    assert.deepEqual(response.json().items, [
      {
        boot: 2,
        seq: 0,
        ts: T0 + 120_000,
        level: "error",
        tag: "main",
        msg: "watchdog",
        fields: { subsystem: "sampling" },
        receivedAt: T0 + 70_000,
      },
      {
        boot: 1,
        seq: 1,
        ts: T0 + 61_000,
        level: "warn",
        tag: "main",
        msg: "bmp280 read failed",
        fields: { failures: 1, retry: true },
        receivedAt: T0 + 5_000,
      },
      {
        boot: 1,
        seq: 0,
        ts: T0 + 60_000,
        level: "info",
        tag: "main",
        msg: "boot",
        fields: { reset: "power-on" },
        receivedAt: T0 + 5_000,
      },
    ]);
  });

  test("level is a minimum, since bounds device time, limit caps the answer", async () => {
    const messages = async (query: string) => {
      const response = await readLogs("dev-1", query);
      assert.equal(response.statusCode, 200, response.body);
      return response.json().items.map((item: { msg: string }) => item.msg);
    };
    assert.deepEqual(await messages("?level=warn"), ["watchdog", "bmp280 read failed"]);
    assert.deepEqual(await messages("?level=error"), ["watchdog"]);
    assert.deepEqual(await messages(`?since=${T0 + 61_000}`), ["watchdog", "bmp280 read failed"]);
    assert.deepEqual(await messages("?limit=1"), ["watchdog"]);
    for (const query of [
      "?level=loud",
      "?limit=-1",
      "?limit=0",
      "?limit=1001",
      "?limit=01",
      "?since=yesterday",
      "?other=1",
    ]) {
      const response = await readLogs("dev-1", query);
      assert.equal(response.statusCode, 400, query);
    }
  });

  test("a bad batch is rejected on its own, with the wire contract's code", async () => {
    const response = await ingest(cloud.app, acme.gatewayKey, {
      logs: [
        { deviceId: "dev-2", receivedAt: T0, batch: { v: 1, records: [record(1, 0, "loud", "bad level")] } },
        { deviceId: "gx-1", receivedAt: T0, batch: { v: 1, records: [record(1, 0, "info", "other tenant")] } },
        { deviceId: "dev-2", receivedAt: T0, batch: { v: 1, records: [record(1, 1, "info", "fine")] } },
      ],
    });
    assert.equal(response.statusCode, 200, response.body);
    assert.deepEqual(
      response.json().rejected.map((r: { kind: string; index: number; code: string }) => [r.kind, r.index, r.code]),
      [
        ["log", 0, "invalid_log"],
        ["log", 1, "unknown_device"],
      ],
    );
    const logs = await readLogs("dev-2");
    assert.deepEqual(
      logs.json().items.map((item: { msg: string }) => item.msg),
      ["fine"],
    );
  });

  test("another organization's device answers 404, and a viewer may read logs", async () => {
    const globexSession = await login(cloud.app, globex.admin.email);
    const foreign = await readLogs("dev-1", "", globexSession);
    assert.equal(foreign.statusCode, 404);
    assert.equal(foreign.json().code, "device_not_found");
    await addMember(cloud.db, acme.tenantId, "viewer@acme.test", "viewer");
    const viewer = await readLogs("dev-1", "?limit=1", await login(cloud.app, "viewer@acme.test"));
    assert.equal(viewer.statusCode, 200, viewer.body);
    assert.equal(viewer.json().items.length, 1);
    const anonymous = await cloud.app.inject({ method: "GET", url: "/api/devices/dev-1/logs" });
    assert.equal(anonymous.statusCode, 401);
  });

  test("a device keeps at most the cap: past it plus a tenth, the oldest records go", async () => {
    const store = new LogStore(cloud.db, 10);
    const batch = (from: number, count: number) => ({
      deviceId: "dev-2",
      receivedAt: T0,
      batch: {
        v: 1 as const,
        records: Array.from({ length: count }, (_, i) => record(9, from + i, "info", `r${from + i}`) as LogRecord),
      },
    });
    await store.store(acme.tenantId, [batch(100, 10)]);
    const kept = () => store.query(acme.tenantId, "dev-2", { level: "debug", since: 0, limit: 100 });
    assert.equal((await kept()).length, 11, "within the cap plus a tenth (with the earlier record): nothing trimmed");
    await store.store(acme.tenantId, [batch(110, 1)]);
    const left = await kept();
    assert.equal(left.length, 10);
    assert.deepEqual(left.map((r) => r.seq).slice(0, 2), [110, 109]);
    assert.equal(left.at(-1)?.seq, 101, "the two oldest were deleted");
  });
});
