import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdtemp, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { SecretBox, SecretBoxError } from "../src/auth/secret-box.ts";

test("a sealed secret opens with its key only, and not once altered", () => {
  const box = new SecretBox(randomBytes(32));
  const sealed = box.seal("whsec-example");
  assert.ok(!sealed.includes("whsec-example"));
  assert.notEqual(box.seal("whsec-example"), sealed, "a fresh IV every time");
  assert.equal(box.open(sealed), "whsec-example");
  assert.throws(() => new SecretBox(randomBytes(32)).open(sealed), /replicas must share SECRETS_KEY/);
  const parts = sealed.split(".");
  const data = Buffer.from(parts[3] ?? "", "base64url");
  data[0] = (data[0] ?? 0) ^ 1;
  parts[3] = data.toString("base64url");
  assert.throws(
    () => box.open(parts.join(".")),
    (error: unknown) => error instanceof SecretBoxError,
  );
});

test("without SECRETS_KEY a key is generated once under DATA_DIR and reused", async () => {
  const dir = await mkdtemp(join(tmpdir(), "kestrel-secret-box-"));
  try {
    const first = await SecretBox.open(undefined, dir);
    const again = await SecretBox.open(undefined, dir);
    assert.equal(again.open(first.seal("x")), "x");
    assert.equal((await stat(join(dir, "secrets.key"))).mode & 0o777, 0o600);
    const configured = await SecretBox.open(randomBytes(32), dir);
    assert.notEqual(configured.keyId, first.keyId, "SECRETS_KEY wins over the file");
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
