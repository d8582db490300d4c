// The host side of the simulated `crypt` module's Digest: digests with node:crypto. (Signatures are
// checked in the worker's C, `kestrel/artifact-signature`, as on the device.)

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

/** Host calls `crypto.*`: digest sessions by id. */
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
