// Simulated Moddable `ecdsa` module (modules/crypt/etc/ecdsa.js): verify(H, sig, asn1) over a digest,
// the key a public point; the Node parent checks the signature (sim/crypto.ts). Signing is not
// simulated: devices only verify.

import host from "kestrel-sim:host";
import type Curve from "curve";
import type ECPoint from "ecp";

function hex(value: bigint, bytes: number): string {
  return value.toString(16).padStart(bytes * 2, "0");
}

/** DER SEQUENCE { INTEGER r, INTEGER s } to r || s. */
function fromAsn1(der: Uint8Array, size: number): Uint8Array {
  const out = new Uint8Array(size * 2);
  let at = 2;
  for (let part = 0; part < 2; part++) {
    if (der[at] !== 0x02) throw new Error("not a DER signature");
    const length = der[at + 1] as number;
    const value = der.subarray(at + 2, at + 2 + length);
    const trimmed = value.length > size ? value.subarray(value.length - size) : value;
    out.set(trimmed, part * size + size - trimmed.length);
    at += 2 + length;
  }
  return out;
}

export default class ECDSA {
  readonly #key: ECPoint | bigint;
  readonly #curve: Curve;

  constructor(key: ECPoint | bigint, curve: Curve) {
    this.#key = key;
    this.#curve = curve;
  }

  sign(): ArrayBuffer {
    throw new Error("ecdsa.sign is not simulated");
  }

  verify(H: ArrayBuffer, sig: ArrayBuffer, asn1?: boolean): boolean {
    if (typeof this.#key === "bigint") throw new Error("verify needs a public key point");
    if ((this.#curve as { name?: string }).name !== "secp256r1") throw new Error("only secp256r1 is simulated");
    const size = this.#curve.orderSize;
    const raw = asn1 ? fromAsn1(new Uint8Array(sig), size) : new Uint8Array(sig);
    return host.call("crypto.ecdsa.verify", {
      x: hex(this.#key.X, size),
      y: hex(this.#key.Y, size),
      digest: Array.from(new Uint8Array(H)),
      signature: Array.from(raw.subarray(0, size * 2)),
    }) as boolean;
  }

  static randint(): bigint {
    throw new Error("ecdsa.randint is not simulated");
  }
}
