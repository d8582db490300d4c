import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { BootstrapError, bootstrap } from "../src/tenants/bootstrap.ts";
import { bearer, login, startTestCloud, type TestCloud } from "./helpers.ts";

describe("bootstrap", () => {
  let cloud: TestCloud;

  before(async () => {
    cloud = await startTestCloud();
  });
  after(() => cloud?.close());

  const deviceAuth = (gatewayKey: string, deviceId: string, token: string) =>
    cloud.app.inject({
      method: "POST",
      url: "/api/gateway/v1/device-auth",
      headers: bearer(gatewayKey),
      payload: { deviceId, token },
    });

  test("a second run reuses tenant, admin and devices, and re-issues every secret", async () => {
    const first = await bootstrap(cloud.db, { tenantName: "Local", adminEmail: "Admin@Local.test", deviceIds: ["a"] });
    assert.equal(first.admin.email, "admin@local.test");
    assert.ok(first.admin.password.length >= 32, "a generated password is long");
    assert.equal(first.devices.length, 1);
    const second = await bootstrap(cloud.db, {
      tenantName: "Local",
      adminEmail: "admin@local.test",
      adminPassword: "a chosen password",
      deviceIds: ["a", "b"],
    });

    assert.equal(second.tenantId, first.tenantId);
    assert.equal(second.admin.password, "a chosen password");
    assert.notEqual(second.gatewayKey, first.gatewayKey);
    assert.equal(await cloud.db.collection("tenants").countDocuments({}), 1);
    assert.equal(await cloud.db.collection("users").countDocuments({}), 1);
    assert.equal(await cloud.db.collection("devices").countDocuments({}), 2);

    assert.equal((await deviceAuth(first.gatewayKey, "a", first.devices[0]?.token ?? "")).statusCode, 401);
    const [a, b] = second.devices;
    assert.ok(a && b);
    assert.equal((await deviceAuth(second.gatewayKey, "a", first.devices[0]?.token ?? "")).statusCode, 401);
    assert.equal((await deviceAuth(second.gatewayKey, a.deviceId, a.token)).statusCode, 200);
    assert.equal((await deviceAuth(second.gatewayKey, b.deviceId, b.token)).statusCode, 200);
    await assert.rejects(login(cloud.app, "admin@local.test", first.admin.password), /401/);
    assert.ok(await login(cloud.app, "admin@local.test", "a chosen password"));
  });

  test("secrets are stored only as hashes", async () => {
    const credentials = await bootstrap(cloud.db, {
      tenantName: "Hashes",
      adminEmail: "admin@hashes.test",
      deviceIds: ["h-1"],
    });
    const everything = JSON.stringify(
      await Promise.all(
        ["users", "devices", "gateway_keys"].map((name) => cloud.db.collection(name).find({}).toArray()),
      ),
    );
    for (const secret of [credentials.admin.password, credentials.gatewayKey, credentials.devices[0]?.token]) {
      assert.ok(secret && !everything.includes(secret));
    }
  });

  test("bad options are refused with a clear BootstrapError", async () => {
    const valid = { tenantName: "Other", adminEmail: "admin@other.test", deviceIds: [] };
    for (const [options, message] of [
      [{ ...valid, tenantName: " " }, /tenantName/],
      [{ ...valid, adminEmail: "not-an-email" }, /not an email/],
      [{ ...valid, adminPassword: "short" }, /adminPassword must be 12/],
      [{ ...valid, deviceIds: ["ok", "not ok"] }, /"not ok" is not a valid device id/],
      [{ ...valid, deviceIds: ["x", "x"] }, /repeat/],
      [{ ...valid, adminEmail: "admin@local.test" }, /already a user of another tenant/],
    ] as const) {
      await assert.rejects(
        bootstrap(cloud.db, { ...options, deviceIds: [...options.deviceIds] }),
        (error: unknown) => error instanceof BootstrapError && message.test(error.message),
      );
    }
  });
});
