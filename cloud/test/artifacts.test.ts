// The artifact registry on the real app and FerretDB: a valid ESP32 image is stored with its SHA-256
// and read back whole or by range; a damaged, truncated, foreign or oversized one is refused with a
// clear error and leaves nothing behind (no registry entry, no GridFS file or chunk); signing makes a
// manifest the organization's public key verifies; gateways fetch by SHA-256 within their tenant.

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { Readable } from "node:stream";
import { after, before, describe, test } from "node:test";
import { buildEsp32Image } from "@kestrel/wire/esp32-image";
import type { FastifyInstance } from "fastify";
import { nodeSha256 } from "../src/artifacts/validators.ts";
import { verifyText } from "../src/signing/p256.ts";
import type { Credentials } from "../src/tenants/bootstrap.ts";
import { bearer, bootstrapTenant, login, startTestCloud, type TestCloud } from "./helpers.ts";

const MAX_BYTES = 256 * 1024;

function image(options: { version?: string; chip?: string; size?: number; seed?: number } = {}): Buffer {
  const bytes = buildEsp32Image(
    {
      chip: options.chip ?? "esp32",
      version: options.version ?? "1.0.0",
      projectName: "kestrel",
      size: options.size ?? 40_000,
      seed: options.seed ?? 1,
    },
    nodeSha256,
  );
  return Buffer.from(bytes);
}

function upload(app: FastifyInstance, token: string, body: Buffer | string, query: Record<string, string> = {}) {
  const search = new URLSearchParams({ kind: "firmware", name: "kestrel-fw", chip: "esp32", ...query });
  return app.inject({
    method: "POST",
    url: `/api/artifacts?${search}`,
    headers: { ...bearer(token), "content-type": "application/octet-stream" },
    payload: body,
  });
}

describe("artifact registry", () => {
  let cloud: TestCloud;
  let acme: Credentials;
  let globex: Credentials;
  let token: string;

  before(async () => {
    cloud = await startTestCloud({ ARTIFACT_MAX_BYTES: String(MAX_BYTES) });
    acme = await bootstrapTenant(cloud.db, "Acme", ["dev-1"]);
    globex = await bootstrapTenant(cloud.db, "Globex", ["gx-1"]);
    token = await login(cloud.app, acme.admin.email);
  });
  after(() => cloud?.close());

  async function storedNothing(): Promise<void> {
    assert.equal(await cloud.db.collection("artifact_blobs.files").countDocuments({}), 0, "no GridFS file");
    assert.equal(await cloud.db.collection("artifact_blobs.chunks").countDocuments({}), 0, "no GridFS chunk");
    assert.equal(await cloud.db.collection("artifacts").countDocuments({}), 0, "no registry entry");
  }

  test("refused uploads say why and store nothing", async () => {
    const good = image({ version: "0.9.0" });
    const tampered = Buffer.from(good);
    tampered[20_000] = (tampered[20_000] as number) ^ 0xff;
    const cases: Array<[string, Buffer | string, Record<string, string>, number, RegExp]> = [
      ["tampered", tampered, {}, 422, /bad_checksum/],
      ["truncated", good.subarray(0, good.length - 1000), {}, 422, /truncated/],
      ["not an image", Buffer.from("#!/bin/sh\nrm -rf /\n"), {}, 422, /not_esp32_image/],
      ["wrong target", image({ chip: "esp32s3" }), {}, 422, /wrong_target.*esp32s3/],
      ["another version than declared", good, { version: "1.0.0" }, 422, /version_mismatch/],
      ["empty", Buffer.alloc(0), {}, 422, /empty/],
      ["a kind without a validator yet", good, { kind: "plugin" }, 422, /plugin/],
      ["over ARTIFACT_MAX_BYTES", image({ size: MAX_BYTES + 50_000 }), {}, 413, /at most/],
    ];
    for (const [what, body, query, status, detail] of cases) {
      const response = await upload(cloud.app, token, body, query);
      assert.equal(response.statusCode, status, `${what}: ${response.body}`);
      assert.match(response.json().detail, detail, what);
      await storedNothing();
    }
  });

  test("an oversized body without Content-Length is cut off as it streams", async () => {
    const big = image({ size: MAX_BYTES + 100_000 });
    const response = await cloud.app.inject({
      method: "POST",
      url: "/api/artifacts?kind=firmware&name=kestrel-fw&chip=esp32",
      headers: { ...bearer(token), "content-type": "application/octet-stream", "transfer-encoding": "chunked" },
      payload: Readable.from(
        (function* () {
          for (let offset = 0; offset < big.length; offset += 16_384) yield big.subarray(offset, offset + 16_384);
        })(),
      ),
    });
    assert.equal(response.statusCode, 413, response.body);
    await storedNothing();
  });

  test("a valid image is stored, listed and read back whole or by byte range", async () => {
    const bytes = image({ version: "1.2.0", size: 100_000, seed: 3 });
    const response = await upload(cloud.app, token, bytes, { notes: "first field build" });
    assert.equal(response.statusCode, 201, response.body);
    const view = response.json();
    assert.equal(view.version, "1.2.0", "version read from esp_app_desc_t");
    assert.equal(view.sha256, createHash("sha256").update(bytes).digest("hex"));
    assert.equal(view.size, bytes.length);
    assert.deepEqual(view.target, { chip: "esp32", board: "*" });
    assert.equal(view.details.projectName, "kestrel");
    assert.equal(view.createdBy, acme.admin.email);

    const list = await cloud.app.inject({ method: "GET", url: "/api/artifacts?kind=firmware", headers: bearer(token) });
    assert.deepEqual(
      list.json().items.map((item: { artifactId: string }) => item.artifactId),
      [view.artifactId],
    );
    const whole = await cloud.app.inject({
      method: "GET",
      url: `/api/artifacts/${view.artifactId}/content`,
      headers: bearer(token),
    });
    assert.equal(whole.statusCode, 200);
    assert.ok(whole.rawPayload.equals(bytes));
    const part = await cloud.app.inject({
      method: "GET",
      url: `/api/artifacts/${view.artifactId}/content`,
      headers: { ...bearer(token), range: "bytes=70000-" },
    });
    assert.equal(part.statusCode, 206);
    assert.equal(part.headers["content-range"], `bytes 70000-${bytes.length - 1}/${bytes.length}`);
    assert.ok(part.rawPayload.equals(bytes.subarray(70_000)));
    const beyond = await cloud.app.inject({
      method: "GET",
      url: `/api/artifacts/${view.artifactId}/content`,
      headers: { ...bearer(token), range: `bytes=${bytes.length}-` },
    });
    assert.equal(beyond.statusCode, 416);

    const again = await upload(cloud.app, token, image({ version: "1.2.0", seed: 9 }));
    assert.equal(again.statusCode, 409, "a version once uploaded never changes");
    assert.equal(again.json().code, "artifact_exists");
  });

  test("signing needs a key; the manifest it makes is verified by the organization's public key", async () => {
    const uploaded = (await upload(cloud.app, token, image({ version: "2.0.0", seed: 4 }))).json();
    const sign = () =>
      cloud.app.inject({
        method: "POST",
        url: `/api/artifacts/${uploaded.artifactId}/signatures`,
        headers: bearer(token),
      });
    const unsigned = await sign();
    assert.equal(unsigned.statusCode, 409);
    assert.equal(unsigned.json().code, "no_signing_key");

    const key = await cloud.app.inject({ method: "POST", url: "/api/signing/keys", headers: bearer(token) });
    assert.equal(key.statusCode, 201, key.body);
    const { keyId, publicKey } = key.json().key;
    const signed = await sign();
    assert.equal(signed.statusCode, 201, signed.body);
    const { manifest } = signed.json();
    assert.ok(verifyText(publicKey, manifest.text, manifest.sig), "the public key verifies the manifest");
    assert.deepEqual(JSON.parse(manifest.text), {
      v: 1,
      artifact: uploaded.artifactId,
      kind: "firmware",
      name: "kestrel-fw",
      version: "2.0.0",
      target: { chip: "esp32", board: "*" },
      size: uploaded.size,
      sha256: uploaded.sha256,
      keyId,
      issued: signed.json().signedAt,
    });
    const repeat = await sign();
    assert.equal(repeat.statusCode, 200, "one signature per key");
    assert.equal(repeat.json().manifest.sig, manifest.sig);
    const listed = await cloud.app.inject({
      method: "GET",
      url: `/api/artifacts/${uploaded.artifactId}`,
      headers: bearer(token),
    });
    assert.deepEqual(
      listed.json().signatures.map((s: { keyId: string }) => s.keyId),
      [keyId],
    );
  });

  test("a gateway fetches its own organization's artifacts by SHA-256, by range too, and no one else's", async () => {
    const bytes = image({ version: "3.0.0", seed: 5 });
    const uploaded = (await upload(cloud.app, token, bytes)).json();
    const fetchAs = (key: string, range?: string) =>
      cloud.app.inject({
        method: "GET",
        url: `/api/gateway/v1/artifacts/${uploaded.sha256}`,
        headers: { ...bearer(key), ...(range ? { range } : {}) },
      });
    const whole = await fetchAs(acme.gatewayKey);
    assert.equal(whole.statusCode, 200);
    assert.ok(whole.rawPayload.equals(bytes));
    const tail = await fetchAs(acme.gatewayKey, "bytes=-100");
    assert.equal(tail.statusCode, 206);
    assert.ok(tail.rawPayload.equals(bytes.subarray(bytes.length - 100)));
    const foreign = await fetchAs(globex.gatewayKey);
    assert.equal(foreign.statusCode, 404);
    assert.equal(foreign.json().code, "artifact_not_found");
  });
});
