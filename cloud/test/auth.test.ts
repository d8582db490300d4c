import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import type { Credentials } from "../src/tenants/bootstrap.ts";
import { bearer, bootstrapTenant, login, PASSWORD, startTestCloud, type TestCloud } from "./helpers.ts";

describe("operator login and sessions", () => {
  let cloud: TestCloud;
  let acme: Credentials;

  before(async () => {
    cloud = await startTestCloud();
    acme = await bootstrapTenant(cloud.db, "Acme", ["dev-1"]);
  });
  after(() => cloud?.close());

  test("the right password gives a session token that opens the API", async () => {
    const response = await cloud.app.inject({
      method: "POST",
      url: "/api/auth/login",
      payload: { email: "ADMIN@acme.test", password: PASSWORD },
    });
    assert.equal(response.statusCode, 200);
    const body = response.json();
    assert.match(body.token, /^[A-Za-z0-9_-]{43}$/);
    assert.ok(body.expiresAt > Date.now());
    assert.deepEqual(body.user, { email: "admin@acme.test", tenantId: acme.tenantId, role: "admin" });

    const me = await cloud.app.inject({ method: "GET", url: "/api/auth/me", headers: bearer(body.token) });
    assert.equal(me.statusCode, 200);
    assert.equal(me.json().email, "admin@acme.test");
  });

  test("a wrong password and an unknown email both answer 401 login_failed", async () => {
    for (const payload of [
      { email: "admin@acme.test", password: "not the password" },
      { email: "nobody@acme.test", password: PASSWORD },
    ]) {
      const response = await cloud.app.inject({ method: "POST", url: "/api/auth/login", payload });
      assert.equal(response.statusCode, 401);
      assert.equal(response.headers["content-type"], "application/problem+json; charset=utf-8");
      assert.deepEqual(response.json(), {
        type: "about:blank",
        title: "Unauthorized",
        status: 401,
        detail: "wrong email or password",
        code: "login_failed",
      });
    }
  });

  test("the API answers 401 without a token, with an unknown token and with a malformed header", async () => {
    for (const headers of [{}, bearer("no-such-session-token"), { authorization: "Basic YWRtaW46YWRtaW4=" }]) {
      const response = await cloud.app.inject({ method: "GET", url: "/api/devices", headers });
      assert.equal(response.statusCode, 401);
      assert.equal(response.json().code, "unauthenticated");
      assert.equal(response.headers["www-authenticate"], "Bearer");
    }
  });

  test("an expired session is refused and removed", async () => {
    const token = await login(cloud.app, acme.admin.email);
    await cloud.db.collection("sessions").updateMany({}, { $set: { expiresAt: new Date(Date.now() - 1000) } });
    const response = await cloud.app.inject({ method: "GET", url: "/api/devices", headers: bearer(token) });
    assert.equal(response.statusCode, 401);
    assert.equal(await cloud.db.collection("sessions").countDocuments({ expiresAt: { $gt: new Date() } }), 0);
  });

  test("logout ends the session", async () => {
    const token = await login(cloud.app, acme.admin.email);
    const logout = await cloud.app.inject({ method: "POST", url: "/api/auth/logout", headers: bearer(token) });
    assert.equal(logout.statusCode, 204);
    const afterLogout = await cloud.app.inject({ method: "GET", url: "/api/devices", headers: bearer(token) });
    assert.equal(afterLogout.statusCode, 401);
  });

  test("a malformed login body is a 400 problem naming the field", async () => {
    const response = await cloud.app.inject({
      method: "POST",
      url: "/api/auth/login",
      payload: { email: "admin@acme.test", password: PASSWORD, remember: true },
    });
    assert.equal(response.statusCode, 400);
    assert.equal(response.json().code, "invalid_request");
    assert.match(response.json().detail, /additional properties/);
  });
});
