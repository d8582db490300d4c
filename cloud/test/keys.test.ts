import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import type { CreatedKey, KeyView } from "../src/keys/key-schema.ts";
import { KeyStore, LAST_USED_RESOLUTION_MS } from "../src/keys/key-store.ts";
import type { Credentials } from "../src/tenants/bootstrap.ts";
import { addMember, batch, bearer, bootstrapTenant, ingest, login, startTestCloud, type TestCloud } from "./helpers.ts";

describe("API keys", () => {
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

  const call = (token: string, method: "GET" | "POST" | "DELETE", url: string, payload?: object) =>
    cloud.app.inject({ method, url, headers: bearer(token), ...(payload ? { payload } : {}) });

  async function createKey(session: string, body: object): Promise<CreatedKey> {
    const response = await call(session, "POST", "/api/keys", body);
    assert.equal(response.statusCode, 201, response.body);
    return response.json<CreatedKey>();
  }

  test("a new key is shown once, listed without its secret, stored only as a hash, and opens the API", async () => {
    const created = await createKey(admin, { name: "grafana", scopes: ["read"] });
    assert.match(created.key, /^kst_[A-Za-z0-9_-]{43}$/);
    assert.deepEqual(created.scopes, ["read"]);
    assert.equal(created.createdBy, acme.admin.email);
    assert.equal(created.lastUsedAt, null);

    const list = (await call(admin, "GET", "/api/keys")).json<{ items: KeyView[] }>();
    const listed = list.items.find((item) => item.keyId === created.keyId);
    assert.ok(listed);
    assert.equal(JSON.stringify(list).includes(created.key), false);
    assert.equal("key" in listed, false);
    const stored = JSON.stringify(await cloud.db.collection("api_keys").find({}).toArray());
    assert.equal(stored.includes(created.key), false);
    assert.equal(stored.includes(created.key.slice(4)), false);

    const org = await call(created.key, "GET", "/api/org");
    assert.equal(org.statusCode, 200);
    assert.equal(org.json().tenantId, acme.tenantId);
    const after = (await call(admin, "GET", "/api/keys")).json<{ items: KeyView[] }>();
    assert.ok(after.items.find((item) => item.keyId === created.keyId)?.lastUsedAt);
  });

  test("a key may do only what its scopes allow: 403 otherwise", async () => {
    const read = await createKey(admin, { name: "reader", scopes: ["read"] });
    const write = await createKey(admin, { name: "writer", scopes: ["write"] });
    const command = { name: "ping" };
    assert.equal((await call(read.key, "POST", "/api/devices/dev-1/commands", command)).statusCode, 403);
    assert.equal((await call(read.key, "POST", "/api/keys", { name: "x", scopes: ["admin"] })).statusCode, 403);
    assert.equal((await call(write.key, "GET", "/api/org")).statusCode, 403);
    assert.equal((await call(write.key, "POST", "/api/devices/dev-1/commands", command)).statusCode, 202);
    const refused = await call(read.key, "GET", "/api/auth/me");
    assert.equal(refused.statusCode, 403, "a key has no session of its own");
    assert.equal(refused.json().code, "forbidden");
  });

  test("an ingest key stands in for a gateway, and may do nothing else", async () => {
    const ingestKey = await createKey(admin, { name: "line 3", scopes: ["ingest"] });
    const read = await createKey(admin, { name: "reader 2", scopes: ["read"] });
    const payload = { telemetry: [{ deviceId: "dev-1", batch: batch(1, 1, 2, Date.now() - 10_000) }] };
    const accepted = await ingest(cloud.app, ingestKey.key, payload);
    assert.equal(accepted.statusCode, 200, accepted.body);
    assert.equal(accepted.json().accepted, 2);
    assert.equal((await ingest(cloud.app, read.key, payload)).statusCode, 403);
    assert.equal((await call(ingestKey.key, "GET", "/api/org")).statusCode, 403);
    assert.equal((await ingest(cloud.app, acme.gatewayKey, payload)).json().accepted, 2, "gateway keys still work");
  });

  test("a revoked key is refused with 401 and listed as revoked", async () => {
    const created = await createKey(admin, { name: "to revoke", scopes: ["read"] });
    assert.equal((await call(created.key, "GET", "/api/org")).statusCode, 200);
    assert.equal((await call(admin, "DELETE", `/api/keys/${created.keyId}`)).statusCode, 204);
    const refused = await call(created.key, "GET", "/api/org");
    assert.equal(refused.statusCode, 401);
    assert.equal(refused.json().code, "unauthenticated");
    const listed = (await call(admin, "GET", "/api/keys")).json<{ items: KeyView[] }>();
    assert.ok(listed.items.find((item) => item.keyId === created.keyId)?.revokedAt);
  });

  test("an expired key is refused with 401; an expiry in the past is refused at creation", async () => {
    const created = await createKey(admin, { name: "short", scopes: ["read"], expiresAt: Date.now() + 3_600_000 });
    assert.equal(typeof created.expiresAt, "number");
    assert.equal((await call(created.key, "GET", "/api/org")).statusCode, 200);
    await cloud.db
      .collection("api_keys")
      .updateOne({ keyId: created.keyId }, { $set: { expiresAt: new Date(Date.now() - 1000) } });
    assert.equal((await call(created.key, "GET", "/api/org")).statusCode, 401);
    const past = await call(admin, "POST", "/api/keys", { name: "old", scopes: ["read"], expiresAt: 1000 });
    assert.equal(past.statusCode, 400);
  });

  test("a key never reaches another organization: its ids answer 404", async () => {
    const acmeKey = await createKey(admin, { name: "admin key", scopes: ["admin"] });
    const globexKey = await createKey(globexAdmin, { name: "globex", scopes: ["read"] });
    assert.equal((await call(acmeKey.key, "GET", "/api/devices/gx-1")).statusCode, 404);
    assert.equal((await call(acmeKey.key, "GET", "/api/devices/gx-1/commands")).statusCode, 404);
    assert.equal((await call(acmeKey.key, "DELETE", `/api/keys/${globexKey.keyId}`)).statusCode, 404);
    const acmeList = (await call(acmeKey.key, "GET", "/api/keys")).json<{ items: KeyView[] }>();
    assert.equal(
      acmeList.items.some((item) => item.keyId === globexKey.keyId),
      false,
    );
    const home = await call(globexKey.key, "GET", "/api/devices/gx-1/commands");
    assert.equal(home.statusCode, 200, "still valid at home");
  });

  test("only admins manage keys", async () => {
    await addMember(cloud.db, acme.tenantId, "user@acme.test", "user");
    const user = await login(cloud.app, "user@acme.test");
    assert.equal((await call(user, "GET", "/api/keys")).statusCode, 403);
    assert.equal((await call(user, "POST", "/api/keys", { name: "x", scopes: ["read"] })).statusCode, 403);
  });

  test(`lastUsedAt is written at most every ${LAST_USED_RESOLUTION_MS / 1000} s per key`, async () => {
    let now = Date.parse("2026-01-01T00:00:00Z");
    const keys = new KeyStore(cloud.db, () => now);
    const { doc, secret } = await keys.create(acme.tenantId, {
      name: "clocked",
      scopes: ["read"],
      expiresAt: null,
      createdBy: "test",
    });
    const lastUsed = async () => (await keys.find(acme.tenantId, doc.keyId))?.lastUsedAt?.getTime();
    assert.ok(await keys.resolve(secret));
    const first = await lastUsed();
    assert.equal(first, now);
    now += LAST_USED_RESOLUTION_MS - 1;
    assert.ok(await keys.resolve(secret));
    assert.equal(await lastUsed(), first);
    now += 1;
    assert.ok(await keys.resolve(secret));
    assert.equal(await lastUsed(), now);
  });
});
