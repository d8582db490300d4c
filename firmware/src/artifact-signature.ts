// kestrel/artifact-signature: what the device checks before it uses an artifact (a plugin): the
// SHA-256 of its bytes and the ECDSA P-256 signature over its manifest, in C with mbedTLS
// (native/signature/artifact-signature.c), the same on the ESP32 and in the simulator.

/** The SHA-256 digest of bytes. */
export function sha256(bytes: ArrayBuffer): ArrayBuffer {
  return native("xs_artifact_sha256").call(undefined, bytes) as ArrayBuffer;
}

/**
 * True when signature (64 bytes, r || s big-endian) is a valid ECDSA P-256 signature of digest under
 * publicKey (65 bytes, the uncompressed point 0x04 || X || Y).
 */
export function verifyP256(publicKey: ArrayBuffer, digest: ArrayBuffer, signature: ArrayBuffer): boolean {
  return native("xs_artifact_verify_p256").call(undefined, publicKey, digest, signature) as boolean;
}
