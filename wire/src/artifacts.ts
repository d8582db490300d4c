// Signed artifacts on the wire: the one pipeline that carries firmware images now, and WASM plugins
// and TinyML models later. The cloud signs a manifest per artifact (ECDSA P-256 over SHA-256, raw
// r||s, the form the device's mbedTLS check takes), offers it to devices through their gateway, the
// device fetches the bytes in chunks from the gateway's cache, verifies, installs and reports each step.
// Device-safe like the rest of the wire: no Node APIs; imported as `@kestrel/wire/artifacts`.

import { fail, isObject, isUint, type Parsed, parseJson, WIRE_VERSION } from "@kestrel/wire";

export type ArtifactKind = "firmware" | "plugin" | "model";

export const ARTIFACT_KINDS: readonly ArtifactKind[] = Object.freeze(["firmware", "plugin", "model"]);

export const ARTIFACT_LIMITS = Object.freeze({
  /** Bytes of artifact data in one chunk message: one flash sector. */
  chunkBytes: 4096,
  /** Chunks a device may ask for in one request. */
  chunksPerRequest: 4,
  nameLength: 64,
  versionLength: 32,
  reasonLength: 200,
  /** Trust records an offer carries (the organization's rotation history, newest last). */
  trustRecords: 16,
  /** Keys a device trusts at once. */
  trustKeys: 4,
  /** Largest artifact the wire can describe (the chunk header's offsets are 32-bit). */
  artifactBytes: 0xffffffff,
} as const);

export const artifactTopics = Object.freeze({
  /** Gateway → device, QoS 1: an ArtifactOffer. */
  offer: (deviceId: string): string => `d/${deviceId}/artifact`,
  /** Device → gateway: an ArtifactChunkRequest. */
  get: (deviceId: string): string => `d/${deviceId}/artifact/get`,
  /** Gateway → device, QoS 0, binary: a chunk header and the bytes. */
  chunk: (deviceId: string): string => `d/${deviceId}/artifact/chunk`,
  /** Device → gateway, QoS 1: an ArtifactStatusReport. */
  status: (deviceId: string): string => `d/${deviceId}/artifact/status`,
});

const HEX = /^[0-9a-f]*$/;
const SHA256_HEX = /^[0-9a-f]{64}$/;
const KEY_ID = /^[0-9a-f]{16}$/;
/** An uncompressed P-256 point: 04 || x || y. */
const PUBLIC_KEY = /^04[0-9a-f]{128}$/;
/** Raw r || s of a P-256 signature. */
const SIGNATURE = /^[0-9a-f]{128}$/;
const ID = /^[A-Za-z0-9_-]{1,64}$/;
const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
const TARGET_PART = /^[a-z0-9_*-]{1,32}$/;
// Semantic Versioning 2.0.0 (semver.org), without leading zeros in numeric parts.
const SEMVER =
  /^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-((?:0|[1-9]\d*|\d*[A-Za-z-][0-9A-Za-z-]*)(?:\.(?:0|[1-9]\d*|\d*[A-Za-z-][0-9A-Za-z-]*))*))?(?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?$/;

export function isSemver(value: unknown): value is string {
  return typeof value === "string" && value.length <= ARTIFACT_LIMITS.versionLength && SEMVER.test(value);
}

export function isSha256Hex(value: unknown): value is string {
  return typeof value === "string" && SHA256_HEX.test(value);
}

function comparePrerelease(a: string, b: string): number {
  const left = a.split(".");
  const right = b.split(".");
  for (let i = 0; i < Math.max(left.length, right.length); i++) {
    const x = left[i];
    const y = right[i];
    if (x === undefined) return -1;
    if (y === undefined) return 1;
    const xNumeric = /^\d+$/.test(x);
    const yNumeric = /^\d+$/.test(y);
    if (xNumeric && yNumeric) {
      if (Number(x) !== Number(y)) return Number(x) < Number(y) ? -1 : 1;
    } else if (xNumeric !== yNumeric) return xNumeric ? -1 : 1;
    else if (x !== y) return x < y ? -1 : 1;
  }
  return 0;
}

/** Semver precedence: < 0 when a is older than b. Build metadata does not count; both must be valid. */
export function compareSemver(a: string, b: string): number {
  const x = SEMVER.exec(a);
  const y = SEMVER.exec(b);
  if (!x || !y) throw new RangeError("not a semantic version");
  for (let i = 1; i <= 3; i++) {
    const difference = Number(x[i]) - Number(y[i]);
    if (difference !== 0) return difference < 0 ? -1 : 1;
  }
  const xPre = x[4];
  const yPre = y[4];
  if (xPre === undefined) return yPre === undefined ? 0 : 1;
  if (yPre === undefined) return -1;
  return comparePrerelease(xPre, yPre);
}

/** Lower-case hex to bytes; undefined when it is not hex of whole bytes. */
export function hexToBytes(hex: string): Uint8Array | undefined {
  if (hex.length % 2 !== 0 || !HEX.test(hex)) return undefined;
  const bytes = new Uint8Array(hex.length / 2);
  for (let i = 0; i < bytes.length; i++) bytes[i] = Number.parseInt(hex.slice(i * 2, i * 2 + 2), 16);
  return bytes;
}

export function bytesToHex(bytes: Uint8Array): string {
  let hex = "";
  for (let i = 0; i < bytes.length; i++) hex += (bytes[i] as number).toString(16).padStart(2, "0");
  return hex;
}

/** Which hardware an artifact is built for: a chip ("esp32", "esp32s3"...) and a board, "*" for any. */
export interface ArtifactTarget {
  chip: string;
  board: string;
}

export function targetMatches(target: ArtifactTarget, chip: string, board: string): boolean {
  return target.chip === chip && (target.board === "*" || target.board === board);
}

/** What an artifact is: its kind, name and version, what it runs on, and its bytes' size and digest. */
export interface ArtifactIdentity {
  kind: ArtifactKind;
  name: string;
  version: string;
  target: ArtifactTarget;
  size: number;
  sha256: string;
}

/**
 * What the cloud signs for an artifact; the device installs nothing that does not match it. `keyId`
 * names the organization key that signed it, `issued` is when (epoch ms).
 */
export interface ArtifactManifest extends ArtifactIdentity {
  v: 1;
  artifact: string;
  keyId: string;
  issued: number;
}

/** A signed statement as it travels: the exact text that was signed, and the signature (hex r || s). */
export interface SignedText {
  text: string;
  sig: string;
}

/** A key an organization signs with: its id and the uncompressed P-256 point in hex. */
export interface TrustKey {
  keyId: string;
  publicKey: string;
}

/**
 * A change to the keys devices trust, signed by a key they trust already: records apply in `seq`
 * order, each at most once. `add` brings in new keys, `retire` drops keys for good (rotation
 * retires the old key; revocation retires a compromised one).
 */
export interface TrustRecord {
  v: 1;
  type: "trust";
  seq: number;
  add: TrustKey[];
  retire: string[];
  keyId: string;
  issued: number;
}

/** Permission, signed, for one campaign to install an older version than the device runs. */
export interface DowngradeGrant {
  v: 1;
  type: "downgrade";
  campaign: string;
  sha256: string;
  keyId: string;
  issued: number;
}

/** Payload of `d/{id}/artifact`: install this artifact, starting at a random moment within windowS seconds. */
export interface ArtifactOffer {
  v: 1;
  campaign: string;
  manifest: SignedText;
  /** The organization's trust records, oldest first; the device applies those it has not seen. */
  trust: SignedText[];
  windowS: number;
  downgrade?: SignedText;
}

/** Payload of `d/{id}/artifact/get`: `length` bytes from `offset` (at most chunksPerRequest chunks). */
export interface ArtifactChunkRequest {
  v: 1;
  sha256: string;
  offset: number;
  length: number;
}

export type ArtifactStatus =
  | "notified"
  | "downloading"
  | "verifying"
  | "installed"
  | "rebooting"
  | "confirmed"
  | "failed"
  | "rolled-back";

export const ARTIFACT_STATUSES: readonly ArtifactStatus[] = Object.freeze([
  "notified",
  "downloading",
  "verifying",
  "installed",
  "rebooting",
  "confirmed",
  "failed",
  "rolled-back",
]);

/** Stable codes of a refusal or failure; `reason` says it for humans. */
export type ArtifactFailure =
  | "tampered"
  | "bad_signature"
  | "unknown_key"
  | "wrong_target"
  | "wrong_kind"
  | "truncated"
  | "invalid_image"
  | "too_large"
  | "downgrade"
  | "bad_trust_record"
  | "download_failed"
  | "flash_error"
  | "health_check"
  | "boot_failed";

const FAILURES: readonly string[] = Object.freeze([
  "tampered",
  "bad_signature",
  "unknown_key",
  "wrong_target",
  "wrong_kind",
  "truncated",
  "invalid_image",
  "too_large",
  "downgrade",
  "bad_trust_record",
  "download_failed",
  "flash_error",
  "health_check",
  "boot_failed",
]);

/**
 * Payload of `d/{id}/artifact/status` (QoS 1): where the device stands with the campaign's artifact.
 * `bytes`/`total` while downloading; `code` and `reason` with failed and rolled-back; `running` is the
 * version the device runs when it reports.
 */
export interface ArtifactStatusReport {
  v: 1;
  campaign: string;
  sha256: string;
  status: ArtifactStatus;
  bytes?: number;
  total?: number;
  code?: ArtifactFailure;
  reason?: string;
  running?: string;
}

function isTarget(value: unknown): value is ArtifactTarget {
  return (
    isObject(value) &&
    typeof value.chip === "string" &&
    TARGET_PART.test(value.chip) &&
    value.chip !== "*" &&
    typeof value.board === "string" &&
    TARGET_PART.test(value.board)
  );
}

export function validateArtifactManifest(raw: unknown): Parsed<ArtifactManifest> {
  if (!isObject(raw)) return fail("invalid_manifest", "manifest must be a JSON object");
  if (raw.v !== WIRE_VERSION) return fail("unsupported_version", `manifest v must be ${WIRE_VERSION}`);
  if (typeof raw.artifact !== "string" || !ID.test(raw.artifact))
    return fail("invalid_manifest", "artifact must be an artifact id");
  if (typeof raw.kind !== "string" || !(ARTIFACT_KINDS as readonly string[]).includes(raw.kind))
    return fail("invalid_manifest", `kind must be one of ${ARTIFACT_KINDS.join(", ")}`);
  if (typeof raw.name !== "string" || !NAME.test(raw.name)) return fail("invalid_manifest", "name is not valid");
  if (!isSemver(raw.version)) return fail("invalid_manifest", "version must be a semantic version");
  if (!isTarget(raw.target)) return fail("invalid_manifest", "target must be { chip, board }");
  if (!isUint(raw.size, ARTIFACT_LIMITS.artifactBytes) || raw.size === 0)
    return fail("invalid_manifest", "size must be a positive byte count");
  if (!isSha256Hex(raw.sha256)) return fail("invalid_manifest", "sha256 must be 64 lower-case hex digits");
  if (typeof raw.keyId !== "string" || !KEY_ID.test(raw.keyId)) return fail("invalid_manifest", "keyId is not valid");
  if (!isUint(raw.issued, Number.MAX_SAFE_INTEGER)) return fail("invalid_manifest", "issued must be epoch ms");
  return {
    ok: true,
    value: {
      v: WIRE_VERSION,
      artifact: raw.artifact,
      kind: raw.kind as ArtifactKind,
      name: raw.name,
      version: raw.version,
      target: { chip: raw.target.chip, board: raw.target.board },
      size: raw.size,
      sha256: raw.sha256,
      keyId: raw.keyId,
      issued: raw.issued,
    },
  };
}

export function parseArtifactManifest(text: string): Parsed<ArtifactManifest> {
  const json = parseJson(text);
  return json.ok ? validateArtifactManifest(json.value) : json;
}

function isTrustKey(value: unknown): value is TrustKey {
  return (
    isObject(value) &&
    typeof value.keyId === "string" &&
    KEY_ID.test(value.keyId) &&
    typeof value.publicKey === "string" &&
    PUBLIC_KEY.test(value.publicKey)
  );
}

function isKeyIdList(value: unknown): value is string[] {
  return (
    Array.isArray(value) &&
    value.length <= ARTIFACT_LIMITS.trustKeys * 4 &&
    value.every((id) => typeof id === "string" && KEY_ID.test(id))
  );
}

export function validateTrustRecord(raw: unknown): Parsed<TrustRecord> {
  if (!isObject(raw)) return fail("invalid_trust_record", "trust record must be a JSON object");
  if (raw.v !== WIRE_VERSION) return fail("unsupported_version", `trust record v must be ${WIRE_VERSION}`);
  if (raw.type !== "trust") return fail("invalid_trust_record", "type must be trust");
  if (!isUint(raw.seq, 0xffffffff) || raw.seq === 0) return fail("invalid_trust_record", "seq must be 1..2^32-1");
  if (!Array.isArray(raw.add) || raw.add.length > ARTIFACT_LIMITS.trustKeys || !raw.add.every(isTrustKey))
    return fail("invalid_trust_record", `add must list at most ${ARTIFACT_LIMITS.trustKeys} keys`);
  if (!isKeyIdList(raw.retire)) return fail("invalid_trust_record", "retire must list key ids");
  if (typeof raw.keyId !== "string" || !KEY_ID.test(raw.keyId))
    return fail("invalid_trust_record", "keyId is not valid");
  if (!isUint(raw.issued, Number.MAX_SAFE_INTEGER)) return fail("invalid_trust_record", "issued must be epoch ms");
  return {
    ok: true,
    value: {
      v: WIRE_VERSION,
      type: "trust",
      seq: raw.seq,
      add: raw.add.map(({ keyId, publicKey }) => ({ keyId, publicKey })),
      retire: [...raw.retire],
      keyId: raw.keyId,
      issued: raw.issued,
    },
  };
}

export function parseTrustRecord(text: string): Parsed<TrustRecord> {
  const json = parseJson(text);
  return json.ok ? validateTrustRecord(json.value) : json;
}

export function validateDowngradeGrant(raw: unknown): Parsed<DowngradeGrant> {
  if (!isObject(raw)) return fail("invalid_grant", "downgrade grant must be a JSON object");
  if (raw.v !== WIRE_VERSION) return fail("unsupported_version", `downgrade grant v must be ${WIRE_VERSION}`);
  if (raw.type !== "downgrade") return fail("invalid_grant", "type must be downgrade");
  if (typeof raw.campaign !== "string" || !ID.test(raw.campaign)) return fail("invalid_grant", "campaign is not valid");
  if (!isSha256Hex(raw.sha256)) return fail("invalid_grant", "sha256 must be 64 lower-case hex digits");
  if (typeof raw.keyId !== "string" || !KEY_ID.test(raw.keyId)) return fail("invalid_grant", "keyId is not valid");
  if (!isUint(raw.issued, Number.MAX_SAFE_INTEGER)) return fail("invalid_grant", "issued must be epoch ms");
  return {
    ok: true,
    value: {
      v: WIRE_VERSION,
      type: "downgrade",
      campaign: raw.campaign,
      sha256: raw.sha256,
      keyId: raw.keyId,
      issued: raw.issued,
    },
  };
}

export function parseDowngradeGrant(text: string): Parsed<DowngradeGrant> {
  const json = parseJson(text);
  return json.ok ? validateDowngradeGrant(json.value) : json;
}

function isSignedText(value: unknown): value is SignedText {
  return (
    isObject(value) &&
    typeof value.text === "string" &&
    value.text.length > 0 &&
    value.text.length <= 2048 &&
    typeof value.sig === "string" &&
    SIGNATURE.test(value.sig)
  );
}

/** Checks the offer's shape; the signatures inside are the installer's to verify. */
export function validateArtifactOffer(raw: unknown): Parsed<ArtifactOffer> {
  if (!isObject(raw)) return fail("invalid_offer", "offer must be a JSON object");
  if (raw.v !== WIRE_VERSION) return fail("unsupported_version", `offer v must be ${WIRE_VERSION}`);
  if (typeof raw.campaign !== "string" || !ID.test(raw.campaign)) return fail("invalid_offer", "campaign is not valid");
  if (!isSignedText(raw.manifest)) return fail("invalid_offer", "manifest must be { text, sig }");
  if (
    !Array.isArray(raw.trust) ||
    raw.trust.length > ARTIFACT_LIMITS.trustRecords ||
    !raw.trust.every((record) => isSignedText(record))
  )
    return fail("invalid_offer", `trust must list at most ${ARTIFACT_LIMITS.trustRecords} signed records`);
  if (!isUint(raw.windowS, 86_400)) return fail("invalid_offer", "windowS must be 0..86400 seconds");
  if (raw.downgrade !== undefined && !isSignedText(raw.downgrade))
    return fail("invalid_offer", "downgrade must be { text, sig }");
  const offer: ArtifactOffer = {
    v: WIRE_VERSION,
    campaign: raw.campaign,
    manifest: { text: raw.manifest.text, sig: raw.manifest.sig },
    trust: raw.trust.map(({ text, sig }) => ({ text, sig })),
    windowS: raw.windowS,
  };
  if (raw.downgrade !== undefined) offer.downgrade = { text: raw.downgrade.text, sig: raw.downgrade.sig };
  return { ok: true, value: offer };
}

export function parseArtifactOffer(text: string): Parsed<ArtifactOffer> {
  const json = parseJson(text);
  return json.ok ? validateArtifactOffer(json.value) : json;
}

export function validateArtifactChunkRequest(raw: unknown): Parsed<ArtifactChunkRequest> {
  if (!isObject(raw)) return fail("invalid_chunk_request", "chunk request must be a JSON object");
  if (raw.v !== WIRE_VERSION) return fail("unsupported_version", `chunk request v must be ${WIRE_VERSION}`);
  if (!isSha256Hex(raw.sha256)) return fail("invalid_chunk_request", "sha256 must be 64 lower-case hex digits");
  if (!isUint(raw.offset, ARTIFACT_LIMITS.artifactBytes))
    return fail("invalid_chunk_request", "offset must be a byte offset");
  const most = ARTIFACT_LIMITS.chunkBytes * ARTIFACT_LIMITS.chunksPerRequest;
  if (!isUint(raw.length, most) || raw.length === 0)
    return fail("invalid_chunk_request", `length must be 1..${most} bytes`);
  return { ok: true, value: { v: WIRE_VERSION, sha256: raw.sha256, offset: raw.offset, length: raw.length } };
}

export function parseArtifactChunkRequest(text: string): Parsed<ArtifactChunkRequest> {
  const json = parseJson(text);
  return json.ok ? validateArtifactChunkRequest(json.value) : json;
}

export function validateArtifactStatusReport(raw: unknown): Parsed<ArtifactStatusReport> {
  if (!isObject(raw)) return fail("invalid_status", "status report must be a JSON object");
  if (raw.v !== WIRE_VERSION) return fail("unsupported_version", `status report v must be ${WIRE_VERSION}`);
  if (typeof raw.campaign !== "string" || !ID.test(raw.campaign))
    return fail("invalid_status", "campaign is not valid");
  if (!isSha256Hex(raw.sha256)) return fail("invalid_status", "sha256 must be 64 lower-case hex digits");
  if (typeof raw.status !== "string" || !(ARTIFACT_STATUSES as readonly string[]).includes(raw.status))
    return fail("invalid_status", `status must be one of ${ARTIFACT_STATUSES.join(", ")}`);
  const report: ArtifactStatusReport = {
    v: WIRE_VERSION,
    campaign: raw.campaign,
    sha256: raw.sha256,
    status: raw.status as ArtifactStatus,
  };
  for (const field of ["bytes", "total"] as const) {
    const value = raw[field];
    if (value === undefined) continue;
    if (!isUint(value, ARTIFACT_LIMITS.artifactBytes)) return fail("invalid_status", `${field} must be a byte count`);
    report[field] = value;
  }
  if (raw.code !== undefined) {
    if (typeof raw.code !== "string" || !FAILURES.includes(raw.code))
      return fail("invalid_status", `code must be one of ${FAILURES.join(", ")}`);
    report.code = raw.code as ArtifactFailure;
  }
  if (raw.reason !== undefined) {
    if (typeof raw.reason !== "string" || raw.reason.length > ARTIFACT_LIMITS.reasonLength)
      return fail("invalid_status", `reason must be a string of at most ${ARTIFACT_LIMITS.reasonLength} characters`);
    report.reason = raw.reason;
  }
  if (raw.running !== undefined) {
    if (typeof raw.running !== "string" || raw.running.length === 0 || raw.running.length > 32)
      return fail("invalid_status", "running must be a version string of 1..32 characters");
    report.running = raw.running;
  }
  return { ok: true, value: report };
}

export function parseArtifactStatusReport(text: string): Parsed<ArtifactStatusReport> {
  const json = parseJson(text);
  return json.ok ? validateArtifactStatusReport(json.value) : json;
}

/**
 * A chunk message on `d/{id}/artifact/chunk` is binary: this 20-byte header (little-endian), then
 * the bytes. Binary because base64 would cost the device a third more RAM and a decode per chunk.
 *
 *   0      u8   format (1)
 *   1      u8   status (ChunkStatus)
 *   2..3   u16  retry after, in 100 ms units (status busy)
 *   4..7   u32  offset of the first byte
 *   8..11  u32  size of the whole artifact
 *   12..19      first 8 bytes of the artifact's SHA-256
 */
export const CHUNK_HEADER_BYTES = 20;
const CHUNK_FORMAT = 1;

export const ChunkStatus = Object.freeze({
  ok: 0,
  /** The gateway has no such artifact for this organization. */
  notFound: 1,
  /** The range is past the artifact's end. */
  badRange: 2,
  /** Too many devices are downloading from this gateway: ask again after retryAfterMs. */
  busy: 3,
  /** The gateway cannot fetch the artifact from the cloud now: ask again later. */
  unavailable: 4,
} as const);

export interface ChunkHeader {
  status: number;
  retryAfterMs: number;
  offset: number;
  size: number;
  /** First 8 bytes of the SHA-256, hex. */
  shaPrefix: string;
}

export function writeChunkHeader(target: Uint8Array, header: ChunkHeader): void {
  if (target.length < CHUNK_HEADER_BYTES) throw new RangeError("chunk header needs 20 bytes");
  const view = new DataView(target.buffer, target.byteOffset, CHUNK_HEADER_BYTES);
  view.setUint8(0, CHUNK_FORMAT);
  view.setUint8(1, header.status);
  view.setUint16(2, Math.min(0xffff, Math.ceil(header.retryAfterMs / 100)), true);
  view.setUint32(4, header.offset, true);
  view.setUint32(8, header.size, true);
  const prefix = hexToBytes(header.shaPrefix.slice(0, 16));
  if (prefix?.length !== 8) throw new RangeError("shaPrefix must be 16 hex digits");
  target.set(prefix, 12);
}

/** Undefined when the message is too short or of another format. */
export function readChunkHeader(message: Uint8Array): ChunkHeader | undefined {
  if (message.length < CHUNK_HEADER_BYTES) return undefined;
  const view = new DataView(message.buffer, message.byteOffset, CHUNK_HEADER_BYTES);
  if (view.getUint8(0) !== CHUNK_FORMAT) return undefined;
  return {
    status: view.getUint8(1),
    retryAfterMs: view.getUint16(2, true) * 100,
    offset: view.getUint32(4, true),
    size: view.getUint32(8, true),
    shaPrefix: bytesToHex(message.subarray(12, 20)),
  };
}
