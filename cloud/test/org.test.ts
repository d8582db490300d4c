import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import type { LoginAnswer } from "../src/auth/auth-schema.ts";
import type { Credentials } from "../src/tenants/bootstrap.ts";
import { memberIdOf } from "../src/tenants/membership-store.ts";
import type { InvitationView, MemberView, NewInvitation, ReceivedInvitation } from "../src/tenants/org-schema.ts";
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

  const acceptWithToken = (token: string, password: string) =>
    cloud.app.inject({ method: "POST", url: "/api/invitations/accept", payload: { token, password } });

  test("inviting answers the same whether or not the email has an account", async () => {
    const fresh = await call(admin, "POST", "/api/org/members", { email: "Nobody.Yet@Acme.test", role: "user" });
    const known = await call(admin, "POST", "/api/org/members", { email: globex.admin.email, role: "user" });
    for (const response of [fresh, known]) assert.equal(response.statusCode, 202, response.body);
    const shape = (invitation: NewInvitation) =>
      Object.entries(invitation)
        .map(([key, value]) => `${key}:${typeof value}`)
        .sort();
    assert.deepEqual(shape(fresh.json<NewInvitation>()), shape(known.json<NewInvitation>()));
    assert.equal(fresh.json<NewInvitation>().email, "nobody.yet@acme.test");
    for (const response of [fresh, known]) {
      assert.equal(response.headers["cache-control"], "no-store");
      assert.match(response.json<NewInvitation>().token, /^kin_/);
    }
    const pending = (await call(admin, "GET", "/api/org/invitations")).json<{ items: InvitationView[] }>();
    assert.deepEqual(
      pending.items.map((item) => item.email).sort(),
      [globex.admin.email, "nobody.yet@acme.test"].sort(),
    );
    assert.equal(JSON.stringify(pending).includes("kin_"), false, "tokens are shown only once");
    const stored = JSON.stringify(await cloud.db.collection("invitations").find({}).toArray());
    assert.equal(stored.includes(fresh.json<NewInvitation>().token.split(".")[1] ?? "-"), false);
  });

  test("an existing user joins only by accepting; until then nothing changes for them", async () => {
    const invited = (
      await call(admin, "POST", "/api/org/members", { email: globex.admin.email, role: "viewer" })
    ).json<NewInvitation>();
    const before = await loginAs({ email: globex.admin.email, password: PASSWORD });
    assert.deepEqual(
      before.json<LoginAnswer>().organizations.map((org) => org.name),
      ["Globex"],
      "no membership without consent",
    );
    const session = before.json<LoginAnswer>().token;
    const waiting = (await call(session, "GET", "/api/auth/invitations")).json<{ items: ReceivedInvitation[] }>();
    assert.deepEqual(
      waiting.items.map((item) => [item.invitationId, item.organization.name, item.role]),
      [[invited.invitationId, "Acme", "viewer"]],
    );
    assert.equal(
      (await call(globexAdmin, "POST", `/api/auth/invitations/${invited.invitationId}x/accept`)).statusCode,
      400,
    );
    const accepted = await call(session, "POST", `/api/auth/invitations/${invited.invitationId}/accept`);
    assert.equal(accepted.statusCode, 200, accepted.body);
    assert.deepEqual(accepted.json(), { tenantId: acme.tenantId, name: "Acme", role: "viewer" });
    const again = await call(session, "POST", `/api/auth/invitations/${invited.invitationId}/accept`);
    assert.equal(again.statusCode, 404, "an invitation is used once");
    const members = (await call(admin, "GET", "/api/org/members")).json<{ items: MemberView[] }>();
    assert.ok(members.items.some((item) => item.email === globex.admin.email && item.role === "viewer"));
    assert.ok(await login(cloud.app, globex.admin.email, PASSWORD), "the password is unchanged");
    // Undo, so the organization list of later tests stays as it was.
    assert.equal((await call(admin, "DELETE", `/api/org/members/${memberIdOf(globex.admin.email)}`)).statusCode, 204);
  });

  test("someone without an account accepts with the token and a password of their own", async () => {
    const invited = (
      await call(admin, "POST", "/api/org/members", { email: "new@acme.test", role: "user" })
    ).json<NewInvitation>();
    // A token differing in its last character (never the same one: a fixed replacement equals it 1 time in 64).
    const last = invited.token.at(-1) === "A" ? "B" : "A";
    const tampered = `${invited.token.slice(0, -1)}${last}`;
    assert.notEqual(tampered, invited.token);
    assert.equal((await acceptWithToken(tampered, "a long enough password")).statusCode, 404);
    const accepted = await acceptWithToken(invited.token, "a long enough password");
    assert.equal(accepted.statusCode, 200, accepted.body);
    assert.equal(accepted.json<LoginAnswer>().user.tenantId, acme.tenantId);
    assert.equal((await me(accepted.json<LoginAnswer>().token)).role, "user");
    assert.ok(await login(cloud.app, "new@acme.test", "a long enough password"));
    assert.equal((await acceptWithToken(invited.token, "a long enough password")).statusCode, 404, "used once");
    const again = await call(admin, "POST", "/api/org/members", { email: "new@acme.test", role: "viewer" });
    assert.equal(again.statusCode, 409);
    assert.equal(again.json().code, "already_member");
  });

  test("the token of an existing account's invitation needs that account's password", async () => {
    await addMember(cloud.db, globex.tenantId, "someone@globex.test", "user");
    const invited = (
      await call(admin, "POST", "/api/org/members", { email: "someone@globex.test", role: "user" })
    ).json<NewInvitation>();
    const wrong = await acceptWithToken(invited.token, "not the right password");
    assert.equal(wrong.statusCode, 401);
    assert.ok(await login(cloud.app, "someone@globex.test", PASSWORD), "the password did not change");
    const declinedBy = await login(cloud.app, "someone@globex.test");
    assert.equal((await call(declinedBy, "DELETE", `/api/auth/invitations/${invited.invitationId}`)).statusCode, 204);
    assert.equal((await acceptWithToken(invited.token, PASSWORD)).statusCode, 404, "declined");
    const revoked = (
      await call(admin, "POST", "/api/org/members", { email: "someone@globex.test", role: "user" })
    ).json<NewInvitation>();
    assert.equal((await call(admin, "DELETE", `/api/org/invitations/${revoked.invitationId}`)).statusCode, 204);
    assert.equal((await acceptWithToken(revoked.token, PASSWORD)).statusCode, 404, "revoked");
  });

  test("members are addressed by id, whatever the length of their email", async () => {
    const long = `${"a".repeat(64)}.${"b".repeat(60)}@${"c".repeat(60)}.${"d".repeat(60)}.test`;
    assert.ok(long.length > 240 && long.length <= 254);
    await addMember(cloud.db, acme.tenantId, long, "viewer");
    const listed = (await call(admin, "GET", "/api/org/members")).json<{ items: MemberView[] }>();
    const entry = listed.items.find((item) => item.email === long);
    assert.ok(entry);
    assert.match(entry.memberId, /^[A-Za-z0-9_-]{22}$/);
    const changed = await call(admin, "PATCH", `/api/org/members/${entry.memberId}`, { role: "user" });
    assert.equal(changed.statusCode, 200, changed.body);
    assert.equal(changed.json<MemberView>().role, "user");
    assert.equal((await call(admin, "DELETE", `/api/org/members/${entry.memberId}`)).statusCode, 204);
  });

  test("login picks the first organization unless one is named; switch moves the session", async () => {
    await addMember(cloud.db, globex.tenantId, acme.admin.email, "viewer");
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
    const changed = await call(admin, "PATCH", `/api/org/members/${memberIdOf("ops@acme.test")}`, { role: "viewer" });
    assert.equal(changed.statusCode, 200);
    assert.equal(changed.json<MemberView>().role, "viewer");
    assert.equal((await me(ops)).role, "viewer");
    assert.equal((await call(ops, "POST", "/api/devices/dev-1/commands", { name: "ping" })).statusCode, 403);

    assert.equal((await call(admin, "DELETE", `/api/org/members/${memberIdOf("ops@acme.test")}`)).statusCode, 204);
    assert.equal((await call(ops, "GET", "/api/org")).statusCode, 401);
    const members = (await call(admin, "GET", "/api/org/members")).json<{ items: MemberView[] }>();
    assert.equal(
      members.items.some((item) => item.email === "ops@acme.test"),
      false,
    );
  });

  test("the last admin can be neither demoted nor removed", async () => {
    const demote = await call(globexAdmin, "PATCH", `/api/org/members/${memberIdOf(globex.admin.email)}`, {
      role: "user",
    });
    assert.equal(demote.statusCode, 409);
    assert.equal(demote.json().code, "last_admin");
    assert.equal(
      (await call(globexAdmin, "DELETE", `/api/org/members/${memberIdOf(globex.admin.email)}`)).statusCode,
      409,
    );

    await addMember(cloud.db, globex.tenantId, "second@globex.test", "admin");
    const now = await call(globexAdmin, "PATCH", `/api/org/members/${memberIdOf(globex.admin.email)}`, {
      role: "user",
    });
    assert.equal(now.statusCode, 200, "with a second admin the first may step down");
    const second = await login(cloud.app, "second@globex.test", PASSWORD, globex.tenantId);
    assert.equal(
      (await call(second, "PATCH", `/api/org/members/${memberIdOf(globex.admin.email)}`, { role: "admin" })).statusCode,
      200,
    );
  });

  test("members of another organization are not found (404)", async () => {
    await addMember(cloud.db, globex.tenantId, "only@globex.test", "user");
    assert.equal(
      (await call(admin, "PATCH", `/api/org/members/${memberIdOf("only@globex.test")}`, { role: "admin" })).statusCode,
      404,
    );
    assert.equal((await call(admin, "DELETE", `/api/org/members/${memberIdOf("only@globex.test")}`)).statusCode, 404);
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
