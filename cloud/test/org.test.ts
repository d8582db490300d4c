import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import type { LoginAnswer } from "../src/auth/auth-schema.ts";
import type { Credentials } from "../src/tenants/bootstrap.ts";
import type { AddedMember, MemberView } from "../src/tenants/org-schema.ts";
import { DEFAULT_SETTINGS, TenantStore } from "../src/tenants/tenant-store.ts";
import { addMember, bearer, bootstrapTenant, login, PASSWORD, startTestCloud, type TestCloud } from "./helpers.ts";

describe("organizations and members", () => {
  let cloud: TestCloud;
  let acme: Credentials;
  let globex: Credentials;
  let admin: string;
  let globexAdmin: string;

  before(async () => {
    cloud = await startTestCloud();
    acme = await bootstrapTenant(cloud.db, "Acme", ["dev-1"]);
    globex = await bootstrapTenant(cloud.db, "Globex", ["gx-1"]);
    admin = await login(cloud.app, acme.admin.email);
    globexAdmin = await login(cloud.app, globex.admin.email);
  });
  after(() => cloud?.close());

  const call = (token: string, method: "GET" | "POST" | "PATCH" | "DELETE", url: string, payload?: object) =>
    cloud.app.inject({ method, url, headers: bearer(token), ...(payload ? { payload } : {}) });
  const loginAs = (payload: object) => cloud.app.inject({ method: "POST", url: "/api/auth/login", payload });
  const me = async (token: string) => (await call(token, "GET", "/api/auth/me")).json();

  test("a new member gets a one-time password; an existing user keeps theirs", async () => {
    const added = await call(admin, "POST", "/api/org/members", { email: "New@Acme.test", role: "user" });
    assert.equal(added.statusCode, 201, added.body);
    const member = added.json<AddedMember>();
    assert.equal(member.email, "new@acme.test");
    assert.equal(member.role, "user");
    assert.ok(member.initialPassword && member.initialPassword.length >= 32);
    const session = await login(cloud.app, "new@acme.test", member.initialPassword);
    assert.equal((await me(session)).role, "user");
    const stored = JSON.stringify(await cloud.db.collection("users").find({}).toArray());
    assert.equal(stored.includes(member.initialPassword), false);

    const again = await call(admin, "POST", "/api/org/members", { email: "new@acme.test", role: "viewer" });
    assert.equal(again.statusCode, 409);

    const existing = await call(globexAdmin, "POST", "/api/org/members", { email: acme.admin.email, role: "viewer" });
    assert.equal(existing.statusCode, 201);
    assert.equal("initialPassword" in existing.json(), false);
    assert.ok(await login(cloud.app, acme.admin.email, PASSWORD), "the password is unchanged");
  });

  test("login picks the first organization unless one is named; switch moves the session", async () => {
    const first = await loginAs({ email: acme.admin.email, password: PASSWORD });
    assert.equal(first.statusCode, 200);
    const answer = first.json<LoginAnswer>();
    assert.equal(answer.user.tenantId, acme.tenantId);
    assert.equal(answer.user.role, "admin");
    assert.deepEqual(
      answer.organizations.map((org) => [org.name, org.role]),
      [
        ["Acme", "admin"],
        ["Globex", "viewer"],
      ],
    );

    const named = await loginAs({ email: acme.admin.email, password: PASSWORD, organization: globex.tenantId });
    assert.equal(named.json<LoginAnswer>().user.tenantId, globex.tenantId);
    assert.equal(named.json<LoginAnswer>().user.role, "viewer");

    const switched = await call(answer.token, "POST", "/api/auth/switch", { organization: globex.tenantId });
    assert.equal(switched.statusCode, 200, switched.body);
    const globexSession = switched.json<LoginAnswer>().token;
    assert.equal((await me(globexSession)).tenantId, globex.tenantId);
    assert.equal((await call(answer.token, "GET", "/api/org")).statusCode, 401, "the old session is replaced");
    assert.equal((await call(globexSession, "GET", "/api/org")).json().name, "Globex");
    assert.equal((await call(globexSession, "GET", "/api/org/members")).statusCode, 403, "a viewer there");
  });

  test("an organization the user does not belong to answers 404, at login and at switch", async () => {
    const other = await bootstrapTenant(cloud.db, "Initech", []);
    const refused = await loginAs({ email: globex.admin.email, password: PASSWORD, organization: other.tenantId });
    assert.equal(refused.statusCode, 404);
    assert.equal(refused.json().code, "organization_not_found");
    const switched = await call(globexAdmin, "POST", "/api/auth/switch", { organization: other.tenantId });
    assert.equal(switched.statusCode, 404);
  });

  test("a role change applies to open sessions at once; removal ends them", async () => {
    await addMember(cloud.db, acme.tenantId, "ops@acme.test", "user");
    const ops = await login(cloud.app, "ops@acme.test");
    const changed = await call(admin, "PATCH", "/api/org/members/ops@acme.test", { role: "viewer" });
    assert.equal(changed.statusCode, 200);
    assert.equal(changed.json<MemberView>().role, "viewer");
    assert.equal((await me(ops)).role, "viewer");
    assert.equal((await call(ops, "POST", "/api/devices/dev-1/commands", { name: "ping" })).statusCode, 403);

    assert.equal((await call(admin, "DELETE", "/api/org/members/ops@acme.test")).statusCode, 204);
    assert.equal((await call(ops, "GET", "/api/org")).statusCode, 401);
    const members = (await call(admin, "GET", "/api/org/members")).json<{ items: MemberView[] }>();
    assert.equal(
      members.items.some((item) => item.email === "ops@acme.test"),
      false,
    );
  });

  test("the last admin can be neither demoted nor removed", async () => {
    const demote = await call(globexAdmin, "PATCH", `/api/org/members/${globex.admin.email}`, { role: "user" });
    assert.equal(demote.statusCode, 409);
    assert.equal(demote.json().code, "last_admin");
    assert.equal((await call(globexAdmin, "DELETE", `/api/org/members/${globex.admin.email}`)).statusCode, 409);

    await addMember(cloud.db, globex.tenantId, "second@globex.test", "admin");
    const now = await call(globexAdmin, "PATCH", `/api/org/members/${globex.admin.email}`, { role: "user" });
    assert.equal(now.statusCode, 200, "with a second admin the first may step down");
    const second = await login(cloud.app, "second@globex.test", PASSWORD, globex.tenantId);
    assert.equal(
      (await call(second, "PATCH", `/api/org/members/${globex.admin.email}`, { role: "admin" })).statusCode,
      200,
    );
  });

  test("members of another organization are not found (404)", async () => {
    await addMember(cloud.db, globex.tenantId, "only@globex.test", "user");
    assert.equal((await call(admin, "PATCH", "/api/org/members/only@globex.test", { role: "admin" })).statusCode, 404);
    assert.equal((await call(admin, "DELETE", "/api/org/members/only@globex.test")).statusCode, 404);
  });

  test("retention settings: defaults, admin change stored on the tenant, consistency, viewers refused", async () => {
    const org = await call(admin, "GET", "/api/org");
    assert.equal(org.statusCode, 200);
    assert.deepEqual(org.json().settings, DEFAULT_SETTINGS);

    const changed = await call(admin, "PATCH", "/api/org/settings", { retention: { rawDays: 7, rollupDays: 400 } });
    assert.equal(changed.statusCode, 200, changed.body);
    assert.deepEqual(changed.json().settings.retention, { rawDays: 7, rollupDays: 400 });
    assert.deepEqual((await new TenantStore(cloud.db).settingsOf(acme.tenantId))?.retention, {
      rawDays: 7,
      rollupDays: 400,
    });
    assert.deepEqual(
      (await new TenantStore(cloud.db).settingsOf(globex.tenantId))?.retention,
      DEFAULT_SETTINGS.retention,
    );

    const inconsistent = await call(admin, "PATCH", "/api/org/settings", { retention: { rawDays: 30, rollupDays: 7 } });
    assert.equal(inconsistent.statusCode, 400);
    await addMember(cloud.db, acme.tenantId, "viewer@acme.test", "viewer");
    const viewer = await login(cloud.app, "viewer@acme.test");
    const refused = await call(viewer, "PATCH", "/api/org/settings", { retention: { rawDays: 1, rollupDays: 1 } });
    assert.equal(refused.statusCode, 403);
  });
});
