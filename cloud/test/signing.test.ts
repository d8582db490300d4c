// Organization signing keys: the first key, rotation by a record the old key signs, revocation by a
// record the active key signs, statuses read from the chain, private keys sealed at rest and never
// in an answer.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { parseTrustRecord } from "@kestrel/wire/artifacts";
import { verifyText } from "../src/signing/p256.ts";
import type { Credentials } from "../src/tenants/bootstrap.ts";
import { addMember, bearer, bootstrapTenant, login, startTestCloud, type TestCloud } from "./helpers.ts";

interface KeyView {
  keyId: string;
  publicKey: string;
  status: string;
}

describe("signing keys", () => {
  let cloud: TestCloud;
  let acme: Credentials;
  let token: string;

  before(async () => {
    cloud = await startTestCloud();
    acme = await bootstrapTenant(cloud.db, "Acme", ["dev-1"]);
    token = await login(cloud.app, acme.admin.email);
  });
  after(() => cloud?.close());

  const call = (method: "GET" | "POST", url: string) => cloud.app.inject({ method, url, headers: bearer(token) });
  const keys = async (): Promise<KeyView[]> => (await call("GET", "/api/signing/keys")).json().items;

  test("first key, rotation, revocation: each record verifies with the key trusted before it", async () => {
    const first = await call("POST", "/api/signing/keys");
    assert.equal(first.statusCode, 201, first.body);
    const a: KeyView = first.json().key;
    assert.equal(first.json().record, null, "devices are provisioned with the first key");
    assert.equal((await call("GET", "/api/signing/trust")).json().records.length, 0);

    const rotation = await call("POST", "/api/signing/keys");
    assert.equal(rotation.statusCode, 201);
    const b: KeyView = rotation.json().key;
    const record = rotation.json().record;
    assert.ok(verifyText(a.publicKey, record.text, record.sig), "the old key signs the rotation");
    const parsed = parseTrustRecord(record.text);
    assert.ok(parsed.ok);
    assert.deepEqual(parsed.value.add, [{ keyId: b.keyId, publicKey: b.publicKey }]);
    assert.deepEqual(parsed.value.retire, [a.keyId]);
    assert.equal(parsed.value.keyId, a.keyId);
    assert.equal(parsed.value.seq, 1);
    assert.deepEqual(
      (await keys()).map(({ keyId, status }) => [keyId, status]),
      [
        [b.keyId, "active"],
        [a.keyId, "retired"],
      ],
    );

    const activeRefused = await call("POST", `/api/signing/keys/${b.keyId}/revoke`);
    assert.equal(activeRefused.statusCode, 409);
    assert.equal(activeRefused.json().code, "key_active");
    const unknown = await call("POST", "/api/signing/keys/0000000000000000/revoke");
    assert.equal(unknown.statusCode, 404);

    const revoked = await call("POST", `/api/signing/keys/${a.keyId}/revoke`);
    assert.equal(revoked.statusCode, 200, revoked.body);
    const revocation = revoked.json().record;
    assert.ok(verifyText(b.publicKey, revocation.text, revocation.sig), "the active key signs the revocation");
    const revocationRecord = parseTrustRecord(revocation.text);
    assert.ok(revocationRecord.ok);
    assert.deepEqual(revocationRecord.value.retire, [a.keyId]);
    assert.equal(revocationRecord.value.seq, 2);
    assert.equal((await keys()).find((key) => key.keyId === a.keyId)?.status, "revoked");
    assert.equal((await call("POST", `/api/signing/keys/${a.keyId}/revoke`)).statusCode, 409, "once");

    const trust = (await call("GET", "/api/signing/trust")).json().records;
    assert.deepEqual(trust, [record, revocation], "the chain devices follow, oldest first");
  });

  test("private keys are sealed at rest and never answered", async () => {
    const stored = await cloud.db.collection("signing_keys").find({ tenantId: acme.tenantId }).toArray();
    assert.ok(stored.length >= 2);
    for (const doc of stored) {
      assert.match(doc.sealedPrivateKey, /^v1\./, "sealed by the secret box");
      assert.doesNotMatch(doc.sealedPrivateKey, /PRIVATE KEY/);
    }
    const answers = [await call("GET", "/api/signing/keys"), await call("POST", "/api/signing/keys")];
    for (const answer of answers) assert.doesNotMatch(answer.body, /PRIVATE|sealed/i);
  });

  test("a viewer reads the keys but cannot make one", async () => {
    await addMember(cloud.db, acme.tenantId, "viewer@acme.test", "viewer");
    const viewer = await login(cloud.app, "viewer@acme.test");
    const list = await cloud.app.inject({ method: "GET", url: "/api/signing/keys", headers: bearer(viewer) });
    assert.equal(list.statusCode, 200);
    const create = await cloud.app.inject({ method: "POST", url: "/api/signing/keys", headers: bearer(viewer) });
    assert.equal(create.statusCode, 403);
  });
});
