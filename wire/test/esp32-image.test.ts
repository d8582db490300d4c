// The ESP32 application image checker against the format esptool documents: every field at its
// documented offset, the checksum and digest computed here independently, and each kind of damage
// (magic, segments, checksum, digest, truncation, trailing bytes) refused with its own code.

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { describe, test } from "node:test";
import {
  APP_DESC_MAGIC,
  buildEsp32Image,
  Esp32ImageChecker,
  parseEsp32Image,
  readEsp32Identity,
  type Sha256,
} from "../src/esp32-image.ts";

function sha256(): Sha256 {
  const hash = createHash("sha256");
  return {
    update: (bytes) => {
      hash.update(bytes);
    },
    digest: () => new Uint8Array(hash.digest()),
  };
}

const spec = { chip: "esp32", version: "1.2.3", projectName: "kestrel" };

function image(size?: number): Uint8Array {
  return buildEsp32Image({ ...spec, size, seed: 7 }, sha256);
}

function code(result: ReturnType<typeof parseEsp32Image>): string {
  assert.equal(result.ok, false, "expected a refusal");
  return result.ok ? "" : result.error.code;
}

describe("ESP32 application image", () => {
  test("the builder writes every documented field where esptool's format puts it", () => {
    const bytes = image(64 * 1024);
    const view = new DataView(bytes.buffer);
    assert.equal(bytes[0], 0xe9, "magic");
    assert.equal(bytes[1], 2, "segment count");
    assert.equal(view.getUint16(12, true), 0, "chip id: ESP32");
    assert.equal(bytes[23], 1, "hash appended");
    assert.equal(view.getUint32(32, true), APP_DESC_MAGIC, "esp_app_desc_t at 0x20");
    assert.equal(Buffer.from(bytes.subarray(48, 53)).toString(), "1.2.3", "version at desc + 16");
    assert.equal(Buffer.from(bytes.subarray(80, 87)).toString(), "kestrel", "project at desc + 48");
    // Independently: XOR of the segment data seeded with 0xEF, at the last byte of a 16-byte block.
    let checksum = 0xef;
    let at = 24;
    for (let s = 0; s < (bytes[1] as number); s++) {
      const length = view.getUint32(at + 4, true);
      for (let i = at + 8; i < at + 8 + length; i++) checksum ^= bytes[i] as number;
      at += 8 + length;
    }
    const padded = at + (16 - (at % 16));
    assert.equal(bytes[padded - 1], checksum);
    assert.deepEqual(
      Buffer.from(bytes.subarray(padded, padded + 32)),
      createHash("sha256").update(bytes.subarray(0, padded)).digest(),
    );
    assert.equal(bytes.length, padded + 32);
    assert.ok(Math.abs(bytes.length - 64 * 1024) < 64, "close to the size asked for");
  });

  test("a well-formed image parses, with its identity", () => {
    const bytes = image(10_000);
    const parsed = parseEsp32Image(bytes, sha256());
    assert.ok(parsed.ok, JSON.stringify(parsed));
    assert.equal(parsed.value.chip, "esp32");
    assert.equal(parsed.value.app.version, "1.2.3");
    assert.equal(parsed.value.app.projectName, "kestrel");
    assert.equal(parsed.value.length, bytes.length);
    assert.equal(parsed.value.segments.length, 2);
    const identity = readEsp32Identity(bytes.subarray(0, 300));
    assert.ok(identity.ok);
    assert.equal(identity.value.app.version, "1.2.3");
  });

  test("fed in uneven pieces, the streaming checker agrees with the whole-image parse", () => {
    const bytes = image(50_000);
    const checker = new Esp32ImageChecker(sha256());
    for (let offset = 0, step = 1; offset < bytes.length; offset += step, step = (step * 7 + 3) % 4099 || 1)
      assert.equal(checker.write(bytes.subarray(offset, offset + step)), undefined);
    const result = checker.end();
    assert.ok(result.ok);
    assert.equal(result.value.length, bytes.length);
  });

  test("damage of each kind is refused with its own code", () => {
    const good = image(20_000);
    const copy = () => new Uint8Array(good);
    const noMagic = copy();
    noMagic[0] = 0x7f;
    assert.equal(code(parseEsp32Image(noMagic, sha256())), "not_esp32_image");
    const flipped = copy();
    flipped[5000] = (flipped[5000] as number) ^ 0x01;
    assert.equal(code(parseEsp32Image(flipped, sha256())), "bad_checksum");
    const badDigest = copy();
    badDigest[badDigest.length - 1] = (badDigest.at(-1) as number) ^ 0x80;
    assert.equal(code(parseEsp32Image(badDigest, sha256())), "bad_digest");
    assert.equal(code(parseEsp32Image(good.subarray(0, good.length - 100), sha256())), "truncated");
    assert.equal(code(parseEsp32Image(good.subarray(0, 10), sha256())), "truncated");
    const trailing = new Uint8Array(good.length + 4);
    trailing.set(good);
    assert.equal(code(parseEsp32Image(trailing, sha256())), "trailing_data");
    const oddSegment = copy();
    new DataView(oddSegment.buffer).setUint32(28, 258, true);
    assert.equal(code(parseEsp32Image(oddSegment, sha256())), "bad_segment");
    const noDesc = copy();
    noDesc[32] = 0;
    assert.equal(code(parseEsp32Image(noDesc, sha256())), "no_app_description");
    const noSegments = copy();
    noSegments[1] = 0;
    assert.equal(code(parseEsp32Image(noSegments, sha256())), "bad_segment");
  });

  test("the chip id names the target: an ESP32-S3 image says so", () => {
    const s3 = buildEsp32Image({ ...spec, chip: "esp32s3" }, sha256);
    const parsed = parseEsp32Image(s3, sha256());
    assert.ok(parsed.ok);
    assert.equal(parsed.value.chipId, 9);
    assert.equal(parsed.value.chip, "esp32s3");
  });
});
