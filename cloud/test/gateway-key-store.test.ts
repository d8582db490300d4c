// Gateway keys: a key found is trusted for KNOWN_KEY_TTL_MS without a lookup (ingest sends it with
// every request); a key re-issued elsewhere stops working within that time, and at once here.

import assert from "node:assert/strict";
import { before, test } from "node:test";
import { GatewayKeyStore, KNOWN_KEY_TTL_MS } from "../src/gateway/gateway-key-store.ts";
import type { Database } from "../src/storage/connect.ts";
import { commandsDuring, ownFerretDb } from "./helpers.ts";

const ferret = ownFerretDb("gateway-keys");
let database: Database;
before(async () => {
  database = await ferret.connect("gateway_keys");
});

/** Lookups of gateway keys the store sends while `work` runs. */
async function lookups(work: () => Promise<unknown>): Promise<number> {
  return (await commandsDuring(database.client, work)).filter(
    ({ commandName, command }) => commandName === "find" && command.find === "gateway_keys",
  ).length;
}

test("a key found is trusted for KNOWN_KEY_TTL_MS without a lookup, then looked up again", async () => {
  let now = 1_000_000;
  const keys = new GatewayKeyStore(database.db, () => now);
  const key = await keys.issue("t1", "site-a");
  assert.equal(await lookups(() => keys.tenantOf(key)), 1);
  now += KNOWN_KEY_TTL_MS - 1;
  assert.equal(await lookups(async () => assert.equal(await keys.tenantOf(key), "t1")), 0);
  now += 1;
  assert.equal(await lookups(async () => assert.equal(await keys.tenantOf(key), "t1")), 1);
});

test("a key revoked elsewhere stops working within KNOWN_KEY_TTL_MS; an unknown key is never remembered", async () => {
  let now = 2_000_000;
  const keys = new GatewayKeyStore(database.db, () => now);
  const key = await keys.issue("t2", "site-b");
  assert.equal(await keys.tenantOf(key), "t2");
  // Another process re-issues the name: the old key's document goes.
  await database.db.collection("gateway_keys").deleteMany({ tenantId: "t2" });
  assert.equal(await keys.tenantOf(key), "t2", "still trusted here until its time is up");
  now += KNOWN_KEY_TTL_MS;
  assert.equal(await keys.tenantOf(key), undefined);
  assert.equal(await lookups(() => keys.tenantOf(key)), 1, "refused again only after asking again");
  assert.equal(await lookups(() => keys.tenantOf("kgw_unknown")), 1);
});

test("re-issuing a name in this process stops the previous key at once", async () => {
  const keys = new GatewayKeyStore(database.db);
  const old = await keys.issue("t3", "site-c");
  assert.equal(await new GatewayKeyStore(database.db).tenantOf(old), "t3");
  const fresh = await new GatewayKeyStore(database.db).issue("t3", "site-c");
  assert.equal(await keys.tenantOf(old), undefined);
  assert.equal(await keys.tenantOf(fresh), "t3");
});
