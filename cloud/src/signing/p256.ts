// ECDSA on P-256 with SHA-256, in the forms the device verifies (kestrel/artifact-signature, mbedTLS):
// public keys as the uncompressed point (04 || x || y) in hex, signatures as raw r || s in hex.

import { createHash, createPublicKey, generateKeyPairSync, type KeyObject, sign, verify } from "node:crypto";

export interface GeneratedKey {
  keyId: string;
  /** Uncompressed point, hex. */
  publicKey: string;
  /** PKCS#8 PEM: seal it before it is stored. */
  privateKeyPem: string;
}

/** The first 8 bytes of the point's SHA-256, hex: short enough for a manifest, unique enough per organization. */
export function keyIdOf(publicKey: string): string {
  return createHash("sha256").update(Buffer.from(publicKey, "hex")).digest("hex").slice(0, 16);
}

function pointHex(key: KeyObject): string {
  const jwk = key.export({ format: "jwk" });
  if (jwk.x === undefined || jwk.y === undefined) throw new Error("not an EC public key");
  return `04${Buffer.from(jwk.x, "base64url").toString("hex")}${Buffer.from(jwk.y, "base64url").toString("hex")}`;
}

export function generateSigningKey(): GeneratedKey {
  const { publicKey, privateKey } = generateKeyPairSync("ec", { namedCurve: "prime256v1" });
  const point = pointHex(publicKey);
  return {
    keyId: keyIdOf(point),
    publicKey: point,
    privateKeyPem: privateKey.export({ format: "pem", type: "pkcs8" }).toString(),
  };
}

export function publicKeyObject(publicKey: string): KeyObject {
  if (!/^04[0-9a-f]{128}$/.test(publicKey)) throw new RangeError("not an uncompressed P-256 point in hex");
  return createPublicKey({
    key: {
      kty: "EC",
      crv: "P-256",
      x: Buffer.from(publicKey.slice(2, 66), "hex").toString("base64url"),
      y: Buffer.from(publicKey.slice(66), "hex").toString("base64url"),
    },
    format: "jwk",
  });
}

/** Signs the UTF-8 bytes of text; hex r || s. */
export function signText(privateKeyPem: string, text: string): string {
  return sign("sha256", Buffer.from(text, "utf8"), { key: privateKeyPem, dsaEncoding: "ieee-p1363" }).toString("hex");
}

export function verifyText(publicKey: string, text: string, signature: string): boolean {
  if (!/^[0-9a-f]{128}$/.test(signature)) return false;
  return verify(
    "sha256",
    Buffer.from(text, "utf8"),
    { key: publicKeyObject(publicKey), dsaEncoding: "ieee-p1363" },
    Buffer.from(signature, "hex"),
  );
}
