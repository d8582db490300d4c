// The artifact wire contract: topics, semver precedence, the signed statements' shapes, offers,
// chunk requests, status reports and the binary chunk header.

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import {
  ARTIFACT_LIMITS,
  artifactTopics,
  bytesToHex,
  CHUNK_HEADER_BYTES,
  ChunkStatus,
  compareSemver,
  hexToBytes,
  isSemver,
  parseArtifactChunkRequest,
  parseArtifactManifest,
  parseArtifactOffer,
  parseArtifactStatusReport,
  parseDowngradeGrant,
  parseTrustRecord,
  readChunkHeader,
  targetMatches,
  writeChunkHeader,
} from "../src/artifacts.ts";
import { parseTopic } from "../src/index.ts";

const SHA = "a".repeat(64);
const KEY = "0123456789abcdef";
const SIG = "b".repeat(128);
const manifest = {
  v: 1,
  artifact: "art-1",
  kind: "firmware",
  name: "kestrel-fw",
  version: "1.2.0",
  target: { chip: "esp32", board: "*" },
  size: 1000,
  sha256: SHA,
  keyId: KEY,
  issued: 1_767_225_600_000,
};

function refused(result: { ok: true } | { ok: false; error: { code: string } }, code: string): void {
  assert.equal(result.ok ? "accepted" : result.error.code, code);
}

describe("artifact topics", () => {
  test("each artifact topic is a device topic of its own kind", () => {
    assert.deepEqual(parseTopic(artifactTopics.offer("d1")), { deviceId: "d1", kind: "artifact" });
    assert.deepEqual(parseTopic(artifactTopics.get("d1")), { deviceId: "d1", kind: "artifact/get" });
    assert.deepEqual(parseTopic(artifactTopics.chunk("d1")), { deviceId: "d1", kind: "artifact/chunk" });
    assert.deepEqual(parseTopic(artifactTopics.status("d1")), { deviceId: "d1", kind: "artifact/status" });
    assert.equal(parseTopic("d/d1/artifact/other"), undefined);
  });
});

describe("semantic versions", () => {
  test("precedence follows semver.org, including pre-releases; build metadata does not count", () => {
    const ordered = ["1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-alpha.beta", "1.0.0-beta", "1.0.0-beta.2", "1.0.0-beta.11"];
    ordered.push("1.0.0-rc.1", "1.0.0", "1.0.1", "1.1.0", "2.0.0", "10.0.0");
    for (let i = 0; i + 1 < ordered.length; i++) {
      assert.equal(
        compareSemver(ordered[i] as string, ordered[i + 1] as string),
        -1,
        `${ordered[i]} < ${ordered[i + 1]}`,
      );
      assert.equal(compareSemver(ordered[i + 1] as string, ordered[i] as string), 1);
    }
    assert.equal(compareSemver("1.2.3+build.5", "1.2.3"), 0);
  });

  test("only valid versions are versions", () => {
    for (const good of ["0.1.0", "1.2.3-rc.1+sha.abc"]) assert.ok(isSemver(good), good);
    for (const bad of ["1.2", "01.2.3", "1.2.3-", "v1.2.3", "1.2.3-01", "x".repeat(40)]) assert.ok(!isSemver(bad), bad);
    assert.throws(() => compareSemver("1.2", "1.2.3"), RangeError);
  });
});

describe("signed statements", () => {
  test("a manifest keeps only its known fields; a bad one is refused naming the field", () => {
    const parsed = parseArtifactManifest(JSON.stringify({ ...manifest, extra: 1 }));
    assert.ok(parsed.ok);
    assert.deepEqual(parsed.value, manifest);
    refused(parseArtifactManifest(JSON.stringify({ ...manifest, kind: "script" })), "invalid_manifest");
    refused(parseArtifactManifest(JSON.stringify({ ...manifest, version: "1.2" })), "invalid_manifest");
    refused(parseArtifactManifest(JSON.stringify({ ...manifest, sha256: "A".repeat(64) })), "invalid_manifest");
    refused(
      parseArtifactManifest(JSON.stringify({ ...manifest, target: { chip: "*", board: "*" } })),
      "invalid_manifest",
    );
    refused(parseArtifactManifest(JSON.stringify({ ...manifest, size: 0 })), "invalid_manifest");
    refused(parseArtifactManifest(JSON.stringify({ ...manifest, v: 2 })), "unsupported_version");
  });

  test("a target matches its chip, and its board unless the board is *", () => {
    assert.ok(targetMatches({ chip: "esp32", board: "*" }, "esp32", "moddable_two"));
    assert.ok(targetMatches({ chip: "esp32", board: "moddable_two" }, "esp32", "moddable_two"));
    assert.ok(!targetMatches({ chip: "esp32", board: "moddable_two" }, "esp32", "esp32"));
    assert.ok(!targetMatches({ chip: "esp32s3", board: "*" }, "esp32", "esp32"));
  });

  test("trust records and downgrade grants", () => {
    const record = {
      v: 1,
      type: "trust",
      seq: 2,
      add: [{ keyId: "fedcba9876543210", publicKey: `04${"c".repeat(128)}` }],
      retire: [KEY],
      keyId: KEY,
      issued: 1,
    };
    assert.ok(parseTrustRecord(JSON.stringify(record)).ok);
    refused(parseTrustRecord(JSON.stringify({ ...record, seq: 0 })), "invalid_trust_record");
    refused(
      parseTrustRecord(JSON.stringify({ ...record, add: [{ keyId: KEY, publicKey: "04" }] })),
      "invalid_trust_record",
    );
    const grant = { v: 1, type: "downgrade", campaign: "cmp-1", sha256: SHA, keyId: KEY, issued: 1 };
    assert.ok(parseDowngradeGrant(JSON.stringify(grant)).ok);
    refused(parseDowngradeGrant(JSON.stringify({ ...grant, type: "trust" })), "invalid_grant");
  });
});

describe("offers, requests and reports", () => {
  const offer = { v: 1, campaign: "cmp-1", manifest: { text: "{}", sig: SIG }, trust: [], windowS: 60 };

  test("an offer carries signed texts; a signature that is not 64 bytes of hex is refused", () => {
    assert.ok(parseArtifactOffer(JSON.stringify(offer)).ok);
    refused(parseArtifactOffer(JSON.stringify({ ...offer, manifest: { text: "{}", sig: "zz" } })), "invalid_offer");
    const tooMany = Array.from({ length: ARTIFACT_LIMITS.trustRecords + 1 }, () => ({ text: "{}", sig: SIG }));
    refused(parseArtifactOffer(JSON.stringify({ ...offer, trust: tooMany })), "invalid_offer");
    refused(parseArtifactOffer(JSON.stringify({ ...offer, windowS: -1 })), "invalid_offer");
  });

  test("a chunk request asks for at most four chunks", () => {
    assert.ok(parseArtifactChunkRequest(JSON.stringify({ v: 1, sha256: SHA, offset: 0, length: 16384 })).ok);
    refused(
      parseArtifactChunkRequest(JSON.stringify({ v: 1, sha256: SHA, offset: 0, length: 16385 })),
      "invalid_chunk_request",
    );
    refused(
      parseArtifactChunkRequest(JSON.stringify({ v: 1, sha256: SHA, offset: -1, length: 1 })),
      "invalid_chunk_request",
    );
  });

  test("a status report names a known status and failure code", () => {
    const report = { v: 1, campaign: "cmp-1", sha256: SHA, status: "failed", code: "tampered", reason: "sha mismatch" };
    assert.ok(parseArtifactStatusReport(JSON.stringify(report)).ok);
    refused(parseArtifactStatusReport(JSON.stringify({ ...report, status: "exploded" })), "invalid_status");
    refused(parseArtifactStatusReport(JSON.stringify({ ...report, code: "bored" })), "invalid_status");
    refused(parseArtifactStatusReport(JSON.stringify({ ...report, reason: "x".repeat(201) })), "invalid_status");
  });
});

describe("chunk header", () => {
  test("round-trips, little-endian, at the documented offsets", () => {
    const message = new Uint8Array(CHUNK_HEADER_BYTES + 4);
    writeChunkHeader(message, {
      status: ChunkStatus.busy,
      retryAfterMs: 2500,
      offset: 0x01020304,
      size: 70_000,
      shaPrefix: SHA,
    });
    assert.equal(message[0], 1);
    assert.equal(message[1], ChunkStatus.busy);
    assert.equal(message[4], 0x04, "offset little-endian");
    assert.deepEqual(readChunkHeader(message), {
      status: ChunkStatus.busy,
      retryAfterMs: 2500,
      offset: 0x01020304,
      size: 70_000,
      shaPrefix: SHA.slice(0, 16),
    });
    assert.equal(readChunkHeader(message.subarray(0, 10)), undefined);
  });

  test("hex helpers", () => {
    assert.deepEqual(hexToBytes("00ff10"), Uint8Array.of(0, 255, 16));
    assert.equal(hexToBytes("0g"), undefined);
    assert.equal(hexToBytes("abc"), undefined);
    assert.equal(bytesToHex(Uint8Array.of(0, 255, 16)), "00ff10");
  });
});
