// The host side of the simulated crypto modules (`crypt` Digest, `ecdsa`): digests with node:crypto,
// and ECDSA verification on P-256 from a digest, as Moddable's `ecdsa` verify(H, sig) takes it
// (node:crypto only verifies over the message, so the curve arithmetic is done here with BigInt).

import { createHash, type Hash } from "node:crypto";
import type { Sha256 } from "@kestrel/wire/esp32-image";
import type { HostPort } from "./xs-machine.ts";

/** node:crypto's SHA-256 as the ESP32 image module takes a hash (checking and building images). */
export function nodeSha256(): Sha256 {
  const hash = createHash("sha256");
  return {
    update: (bytes) => {
      hash.update(bytes);
    },
    digest: () => new Uint8Array(hash.digest()),
  };
}

const P = 0xffffffff00000001000000000000000000000000ffffffffffffffffffffffffn;
const A = P - 3n;
const N = 0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551n;
const G = {
  x: 0x6b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c296n,
  y: 0x4fe342e2fe1a7f9b8ee7eb4a7c0f9e162bce33576b315ececbb6406837bf51f5n,
};
const B = 0x5ac635d8aa3a93e7b3ebbd55769886bc651d06b0cc53b0f63bce3c3e27d2604bn;

type Point = { x: bigint; y: bigint } | null;

function mod(a: bigint, m: bigint): bigint {
  const r = a % m;
  return r < 0n ? r + m : r;
}

function inverse(a: bigint, m: bigint): bigint {
  let [oldR, r] = [mod(a, m), m];
  let [oldS, s] = [1n, 0n];
  while (r !== 0n) {
    const q = oldR / r;
    [oldR, r] = [r, oldR - q * r];
    [oldS, s] = [s, oldS - q * s];
  }
  return mod(oldS, m);
}

function add(p: Point, q: Point): Point {
  if (!p) return q;
  if (!q) return p;
  if (p.x === q.x && mod(p.y + q.y, P) === 0n) return null;
  const slope =
    p.x === q.x && p.y === q.y
      ? mod((3n * p.x * p.x + A) * inverse(2n * p.y, P), P)
      : mod((q.y - p.y) * inverse(q.x - p.x, P), P);
  const x = mod(slope * slope - p.x - q.x, P);
  return { x, y: mod(slope * (p.x - x) - p.y, P) };
}

function multiply(k: bigint, point: Point): Point {
  let result: Point = null;
  let addend = point;
  for (let bits = k; bits > 0n; bits >>= 1n) {
    if (bits & 1n) result = add(result, addend);
    addend = add(addend, addend);
  }
  return result;
}

function onCurve(x: bigint, y: bigint): boolean {
  return x < P && y < P && mod(y * y - (x * x * x + A * x + B), P) === 0n;
}

/** ECDSA P-256 verification of a digest (SEC 1 §4.1.4); key, digest and signature (r || s) in hex. */
export function verifyP256Digest(key: { x: string; y: string }, digestHex: string, signatureHex: string): boolean {
  const qx = BigInt(`0x${key.x}`);
  const qy = BigInt(`0x${key.y}`);
  if (!onCurve(qx, qy) || signatureHex.length !== 128) return false;
  const r = BigInt(`0x${signatureHex.slice(0, 64)}`);
  const s = BigInt(`0x${signatureHex.slice(64)}`);
  if (r <= 0n || r >= N || s <= 0n || s >= N) return false;
  // A 256-bit digest is used whole on a 256-bit curve.
  const e = BigInt(`0x${digestHex.slice(0, 64) || "0"}`);
  const w = inverse(s, N);
  const point = add(multiply(mod(e * w, N), G), multiply(mod(r * w, N), { x: qx, y: qy }));
  return point !== null && mod(point.x, N) === r;
}

const DIGESTS: Readonly<Record<string, string>> = Object.freeze({
  MD5: "md5",
  SHA1: "sha1",
  SHA224: "sha224",
  SHA256: "sha256",
  SHA384: "sha384",
  SHA512: "sha512",
});

function bytesOf(value: unknown): Buffer {
  if (typeof value === "string") return Buffer.from(value, "utf8");
  if (Array.isArray(value)) return Buffer.from(value as number[]);
  throw new TypeError("data must be a string or bytes");
}

/** Host calls `crypto.*`: digest sessions by id, and ECDSA verification. */
export class CryptoPort implements HostPort {
  readonly #digests = new Map<number, { type: string; hash: Hash }>();
  #nextId = 1;

  handle(op: string, args: Record<string, unknown>): unknown {
    switch (op) {
      case "digest.create": {
        const algorithm = DIGESTS[String(args.type)];
        if (!algorithm) throw new Error(`unsupported digest ${String(args.type)}`);
        const id = this.#nextId++;
        this.#digests.set(id, { type: algorithm, hash: createHash(algorithm) });
        return id;
      }
      case "digest.write":
        this.#digest(args.id).hash.update(bytesOf(args.data));
        return undefined;
      case "digest.close": {
        // As the SDK's: closing frees the digest's context; nothing can be done with it after.
        const bytes = Array.from(this.#digest(args.id).hash.digest());
        this.#digests.delete(Number(args.id));
        return bytes;
      }
      case "digest.reset": {
        const digest = this.#digest(args.id);
        digest.hash = createHash(digest.type);
        return undefined;
      }
      case "ecdsa.verify":
        return verifyP256Digest(
          { x: String(args.x), y: String(args.y) },
          Buffer.from(args.digest as number[]).toString("hex"),
          Buffer.from(args.signature as number[]).toString("hex"),
        );
      default:
        throw new Error(`unknown crypto operation ${op}`);
    }
  }

  /** The board powered down: digests in progress are gone with the RAM that held them. */
  reset(): void {
    this.#digests.clear();
  }

  #digest(id: unknown): { type: string; hash: Hash } {
    const digest = this.#digests.get(Number(id));
    if (!digest) throw new Error("crypt: can't call digest write after close");
    return digest;
  }
}
