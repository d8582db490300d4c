// The ESP32 application image format, as esptool's elf2image writes it and ESP-IDF's bootloader and
// esp_ota_end() check it (esptool docs, "Firmware Image Format"; ESP-IDF esp_app_desc_t):
//
//   header (8)           0xE9, segment count, SPI mode, flash size | frequency, entry address
//   extended header (16) WP pin, SPI drive (3), chip id (u16), min rev, min/max rev full (u16 x2),
//                        reserved (4), hash appended (1 = a SHA-256 follows the checksum)
//   segments             load address (u32), length (u32, a multiple of 4), data; the first one
//                        starts with esp_app_desc_t (magic 0xABCD5432, version, project name, ...)
//   footer               zero padding to one byte short of a multiple of 16, then the checksum: the
//                        XOR of every segment data byte and 0xEF; then, if appended, the SHA-256 of
//                        everything before it
//
// A streaming checker (the cloud validates uploads as they arrive, the simulator checks what its
// `ota` module wrote) and a builder for test images. No Node APIs: `@kestrel/wire/esp32-image`.

import { fail, type Parsed } from "@kestrel/wire";

export const ESP_IMAGE_MAGIC = 0xe9;
export const APP_DESC_MAGIC = 0xabcd5432;
const HEADER_BYTES = 24;
const SEGMENT_HEADER_BYTES = 8;
/** esp_app_desc_t: magic, secure version, reserved, version[32], project[32], time[16], date[16], idf[32], ... */
export const APP_DESC_BYTES = 256;
/** Where esp_app_desc_t starts: after the headers and the first segment's header. */
export const APP_DESC_OFFSET = HEADER_BYTES + SEGMENT_HEADER_BYTES;
const CHECKSUM_SEED = 0xef;
const DIGEST_BYTES = 32;
/** ESP-IDF's ESP_IMAGE_MAX_SEGMENTS. */
const MAX_SEGMENTS = 16;
const MAX_SEGMENT_BYTES = 16 * 1024 * 1024;

/** esp_chip_id_t values and the names targets use. */
export const ESP_CHIPS: Readonly<Record<number, string>> = Object.freeze({
  0: "esp32",
  2: "esp32s2",
  5: "esp32c3",
  9: "esp32s3",
  12: "esp32c2",
  13: "esp32c6",
  16: "esp32h2",
  18: "esp32p4",
});

export function chipIdOf(chip: string): number | undefined {
  for (const [id, name] of Object.entries(ESP_CHIPS)) if (name === chip) return Number(id);
  return undefined;
}

/** The parts of esp_app_desc_t that say what the image is. */
export interface AppDescription {
  version: string;
  projectName: string;
  secureVersion: number;
  time: string;
  date: string;
  idfVersion: string;
}

export interface Esp32Image {
  chipId: number;
  /** Undefined for a chip id this module does not know. */
  chip: string | undefined;
  entry: number;
  segments: Array<{ address: number; length: number }>;
  hashAppended: boolean;
  app: AppDescription;
  /** Bytes from the magic to the end of the checksum (and the digest, if appended). */
  length: number;
}

/** An incremental SHA-256, supplied by the platform (node:crypto, Moddable's Digest). */
export interface Sha256 {
  update(bytes: Uint8Array): void;
  digest(): Uint8Array;
}

function text(bytes: Uint8Array, offset: number, length: number): string {
  let out = "";
  for (let i = offset; i < offset + length; i++) {
    const code = bytes[i] as number;
    if (code === 0) break;
    out += String.fromCharCode(code);
  }
  return out;
}

function readAppDescription(bytes: Uint8Array, offset: number): AppDescription | undefined {
  const view = new DataView(bytes.buffer, bytes.byteOffset + offset, APP_DESC_BYTES);
  if (view.getUint32(0, true) !== APP_DESC_MAGIC) return undefined;
  return {
    secureVersion: view.getUint32(4, true),
    version: text(bytes, offset + 16, 32),
    projectName: text(bytes, offset + 48, 32),
    time: text(bytes, offset + 80, 16),
    date: text(bytes, offset + 96, 16),
    idfVersion: text(bytes, offset + 112, 32),
  };
}

/**
 * What the start of an image says it is (chip and app description), from its first
 * APP_DESC_OFFSET + APP_DESC_BYTES bytes: a device checks this on the first chunk it receives.
 */
export function readEsp32Identity(
  head: Uint8Array,
): Parsed<{ chipId: number; chip: string | undefined; app: AppDescription }> {
  if (head.length < APP_DESC_OFFSET + APP_DESC_BYTES) return fail("truncated", "too short for an ESP32 app image");
  if (head[0] !== ESP_IMAGE_MAGIC) return fail("not_esp32_image", "no ESP32 image magic (0xE9) at byte 0");
  const chipId = (head[12] as number) | ((head[13] as number) << 8);
  const app = readAppDescription(head, APP_DESC_OFFSET);
  if (!app) return fail("no_app_description", "the first segment does not start with esp_app_desc_t");
  return { ok: true, value: { chipId, chip: ESP_CHIPS[chipId], app } };
}

type Phase = "header" | "segmentHeader" | "segmentData" | "padding" | "checksum" | "digest" | "done";

/**
 * Checks an image as its bytes arrive, without holding it: structure, checksum and appended digest.
 * write() returns an error as soon as the bytes cannot be an image; end() says whether they were a
 * whole one.
 */
export class Esp32ImageChecker {
  readonly #hash: Sha256;
  #phase: Phase = "header";
  /** Bytes of the current header being collected. */
  readonly #pending = new Uint8Array(APP_DESC_OFFSET + APP_DESC_BYTES);
  #pendingLength = 0;
  #position = 0;
  #segmentsLeft = 0;
  #segmentRemaining = 0;
  #checksum = CHECKSUM_SEED;
  #digest: Uint8Array | undefined;
  #digestRead = 0;
  readonly #expectedDigest = new Uint8Array(DIGEST_BYTES);
  #error: Parsed<never> | undefined;
  #image: Omit<Esp32Image, "app" | "length"> & { app?: AppDescription } = {
    chipId: 0,
    chip: undefined,
    entry: 0,
    segments: [],
    hashAppended: false,
  };

  readonly #ignoreTrailing: boolean;

  /**
   * With ignoreTrailing, bytes after the image's end are not an error: reading an image out of a
   * flash partition, whose erased rest follows it.
   */
  constructor(hash: Sha256, options: { ignoreTrailing?: boolean } = {}) {
    this.#hash = hash;
    this.#ignoreTrailing = options.ignoreTrailing ?? false;
  }

  /** Bytes of the image accepted so far. */
  get position(): number {
    return this.#position;
  }

  /** Whether the whole image (through its checksum and digest) has been seen. */
  get complete(): boolean {
    return this.#phase === "done";
  }

  write(bytes: Uint8Array): Parsed<never> | undefined {
    if (this.#error) return this.#error;
    let offset = 0;
    while (offset < bytes.length && !this.#error) offset += this.#consume(bytes, offset);
    return this.#error;
  }

  end(): Parsed<Esp32Image> {
    if (this.#error) return this.#error;
    if (this.#phase !== "done")
      return fail("truncated", `image ends after ${this.#position} bytes, in its ${this.#phase}`);
    const app = this.#image.app as AppDescription;
    return { ok: true, value: { ...this.#image, app, length: this.#position } };
  }

  #stop(code: string, message: string): number {
    this.#error = fail(code, message);
    return 0;
  }

  #collect(bytes: Uint8Array, offset: number, wanted: number): number {
    const take = Math.min(wanted - this.#pendingLength, bytes.length - offset);
    this.#pending.set(bytes.subarray(offset, offset + take), this.#pendingLength);
    this.#pendingLength += take;
    return take;
  }

  #consume(bytes: Uint8Array, offset: number): number {
    switch (this.#phase) {
      case "header": {
        const take = this.#collect(bytes, offset, HEADER_BYTES);
        // Anything else is refused from its first byte, not after a whole header.
        if (this.#pending[0] !== ESP_IMAGE_MAGIC)
          return this.#stop("not_esp32_image", "no ESP32 image magic (0xE9) at byte 0");
        this.#advance(bytes, offset, take);
        if (this.#pendingLength === HEADER_BYTES) this.#onHeader();
        return take;
      }
      case "segmentHeader": {
        const take = this.#collect(bytes, offset, SEGMENT_HEADER_BYTES);
        this.#advance(bytes, offset, take);
        if (this.#pendingLength === SEGMENT_HEADER_BYTES) this.#onSegmentHeader();
        return take;
      }
      case "segmentData": {
        const take = Math.min(this.#segmentRemaining, bytes.length - offset);
        let checksum = this.#checksum;
        for (let i = offset; i < offset + take; i++) checksum ^= bytes[i] as number;
        this.#checksum = checksum;
        // The first segment's first bytes are esp_app_desc_t.
        if (this.#image.segments.length === 1 && this.#pendingLength < APP_DESC_BYTES) {
          const keep = Math.min(take, APP_DESC_BYTES - this.#pendingLength);
          this.#pending.set(bytes.subarray(offset, offset + keep), this.#pendingLength);
          this.#pendingLength += keep;
          if (this.#pendingLength === APP_DESC_BYTES) {
            const app = readAppDescription(this.#pending, 0);
            if (!app) return this.#stop("no_app_description", "the first segment does not start with esp_app_desc_t");
            this.#image.app = app;
          }
        }
        this.#segmentRemaining -= take;
        this.#advance(bytes, offset, take);
        if (this.#segmentRemaining === 0) this.#nextSegment();
        return take;
      }
      case "padding": {
        const take = Math.min(15 - (this.#position % 16), bytes.length - offset);
        this.#advance(bytes, offset, take);
        if (this.#position % 16 === 15) this.#phase = "checksum";
        return take;
      }
      case "checksum": {
        const stored = bytes[offset] as number;
        if (stored !== this.#checksum)
          return this.#stop(
            "bad_checksum",
            `checksum byte is 0x${stored.toString(16)}, the segments give 0x${this.#checksum.toString(16)}`,
          );
        this.#advance(bytes, offset, 1);
        if (this.#image.hashAppended) {
          this.#digest = this.#hash.digest();
          this.#phase = "digest";
        } else this.#phase = "done";
        return 1;
      }
      case "digest": {
        const take = Math.min(DIGEST_BYTES - this.#digestRead, bytes.length - offset);
        this.#expectedDigest.set(bytes.subarray(offset, offset + take), this.#digestRead);
        this.#digestRead += take;
        this.#position += take;
        if (this.#digestRead === DIGEST_BYTES) {
          const digest = this.#digest as Uint8Array;
          for (let i = 0; i < DIGEST_BYTES; i++)
            if (digest[i] !== this.#expectedDigest[i])
              return this.#stop("bad_digest", "the appended SHA-256 does not match the image");
          this.#phase = "done";
        }
        return take;
      }
      case "done":
        if (this.#ignoreTrailing) return bytes.length - offset;
        return this.#stop("trailing_data", `bytes follow the end of the image at byte ${this.#position}`);
    }
  }

  #advance(bytes: Uint8Array, offset: number, length: number): void {
    this.#hash.update(bytes.subarray(offset, offset + length));
    this.#position += length;
  }

  #onHeader(): void {
    const header = this.#pending;
    const view = new DataView(header.buffer, 0, HEADER_BYTES);
    const count = header[1] as number;
    if (count === 0 || count > MAX_SEGMENTS) {
      this.#stop("bad_segment", `segment count ${count} is not 1..${MAX_SEGMENTS}`);
      return;
    }
    this.#image.entry = view.getUint32(4, true);
    this.#image.chipId = view.getUint16(12, true);
    this.#image.chip = ESP_CHIPS[this.#image.chipId];
    const hashAppended = header[23] as number;
    if (hashAppended > 1) {
      this.#stop("bad_header", `hash-appended byte is ${hashAppended}, not 0 or 1`);
      return;
    }
    this.#image.hashAppended = hashAppended === 1;
    this.#segmentsLeft = count;
    this.#pendingLength = 0;
    this.#phase = "segmentHeader";
  }

  #onSegmentHeader(): void {
    const view = new DataView(this.#pending.buffer, 0, SEGMENT_HEADER_BYTES);
    const address = view.getUint32(0, true);
    const length = view.getUint32(4, true);
    const index = this.#image.segments.length;
    if (length % 4 !== 0 || length >= MAX_SEGMENT_BYTES) {
      this.#stop("bad_segment", `segment ${index} length ${length} is not a multiple of 4 below 16 MB`);
      return;
    }
    if (index === 0 && length < APP_DESC_BYTES) {
      this.#stop("no_app_description", "the first segment is too short to hold esp_app_desc_t");
      return;
    }
    this.#image.segments.push({ address, length });
    this.#segmentsLeft--;
    this.#segmentRemaining = length;
    this.#pendingLength = 0;
    this.#phase = length > 0 ? "segmentData" : "segmentHeader";
    if (length === 0) this.#nextSegment();
  }

  #nextSegment(): void {
    this.#pendingLength = 0;
    if (this.#segmentsLeft > 0) this.#phase = "segmentHeader";
    else this.#phase = this.#position % 16 === 15 ? "checksum" : "padding";
  }
}

/** Checks a whole image held in memory. */
export function parseEsp32Image(bytes: Uint8Array, hash: Sha256): Parsed<Esp32Image> {
  const checker = new Esp32ImageChecker(hash);
  const error = checker.write(bytes);
  return error ?? checker.end();
}

export interface Esp32ImageSpec {
  chip: string;
  version: string;
  projectName: string;
  /** Total image size to reach with a filler segment (rounded to the format's alignment); smallest if omitted. */
  size?: number;
  /** Seeds the filler bytes, so two images of the same size differ. */
  seed?: number;
  secureVersion?: number;
  idfVersion?: string;
  entry?: number;
}

function writeText(target: Uint8Array, offset: number, length: number, value: string): void {
  for (let i = 0; i < Math.min(value.length, length - 1); i++) target[offset + i] = value.charCodeAt(i) & 0x7f;
}

/**
 * A well-formed application image of the given identity: a DROM segment holding esp_app_desc_t
 * and, to reach `size`, a filler segment of seeded bytes; checksum and appended SHA-256 as esptool
 * writes them. For tests, benchmarks and the simulator's factory-flashed image.
 */
export function buildEsp32Image(spec: Esp32ImageSpec, hash: () => Sha256): Uint8Array {
  const chipId = chipIdOf(spec.chip);
  if (chipId === undefined) throw new RangeError(`unknown chip ${spec.chip}`);
  const descSegment = APP_DESC_BYTES;
  const fixed = HEADER_BYTES + SEGMENT_HEADER_BYTES + descSegment;
  const footer = DIGEST_BYTES + 16;
  let filler = 0;
  if (spec.size !== undefined && spec.size > fixed + SEGMENT_HEADER_BYTES + footer)
    filler = Math.floor((spec.size - fixed - SEGMENT_HEADER_BYTES - footer) / 4) * 4;
  const segments = filler > 0 ? 2 : 1;
  const body = fixed + (filler > 0 ? SEGMENT_HEADER_BYTES + filler : 0);
  const padded = body + (15 - (body % 16)) + 1;
  const image = new Uint8Array(padded + DIGEST_BYTES);
  const view = new DataView(image.buffer);
  image[0] = ESP_IMAGE_MAGIC;
  image[1] = segments;
  image[2] = 2; // DIO
  image[3] = 0x20; // 4 MB, 40 MHz
  view.setUint32(4, spec.entry ?? 0x40080000, true);
  image[8] = 0xee; // WP pin: disabled, as the IDF bootloader writes it
  view.setUint16(12, chipId, true);
  view.setUint16(17, 0xffff, true); // max chip revision: any
  image[23] = 1; // hash appended
  let at = HEADER_BYTES;
  view.setUint32(at, 0x3f400020, true); // DROM
  view.setUint32(at + 4, descSegment, true);
  at += SEGMENT_HEADER_BYTES;
  view.setUint32(at, APP_DESC_MAGIC, true);
  view.setUint32(at + 4, spec.secureVersion ?? 0, true);
  writeText(image, at + 16, 32, spec.version);
  writeText(image, at + 48, 32, spec.projectName);
  writeText(image, at + 80, 16, "00:00:00");
  writeText(image, at + 96, 16, "Jan  1 2026");
  writeText(image, at + 112, 32, spec.idfVersion ?? "v5.4.1");
  at += descSegment;
  if (filler > 0) {
    view.setUint32(at, 0x400d0020, true); // IROM
    view.setUint32(at + 4, filler, true);
    at += SEGMENT_HEADER_BYTES;
    // xorshift32: cheap, seeded, no structure a checksum could miss.
    let state = (spec.seed ?? 1) >>> 0 || 1;
    for (let i = 0; i < filler; i++) {
      state ^= state << 13;
      state ^= state >>> 17;
      state ^= state << 5;
      image[at + i] = state & 0xff;
    }
    at += filler;
  }
  let checksum = CHECKSUM_SEED;
  let offset = HEADER_BYTES;
  for (let s = 0; s < segments; s++) {
    const length = view.getUint32(offset + 4, true);
    offset += SEGMENT_HEADER_BYTES;
    for (let i = offset; i < offset + length; i++) checksum ^= image[i] as number;
    offset += length;
  }
  image[padded - 1] = checksum;
  const digest = hash();
  digest.update(image.subarray(0, padded));
  image.set(digest.digest(), padded);
  return image;
}
