// Makes the signed package a device installs (PluginPackage, docs/protocol.md): the manifest with
// the module's SHA-256 and size, its ECDSA P-256 signature (IEEE P1363 r || s, over the manifest's
// exact text) and the module, base64. What the cloud's artifact signer does; tests and partners
// use it directly.

import { createHash, type KeyObject, sign } from "node:crypto";
import { type PluginConfig, type PluginManifest, type PluginPackage, WIRE_VERSION } from "@kestrel/wire";

export interface PluginSigning {
  name: string;
  version: string;
  metrics: string[];
  keyId: string;
  privateKey: KeyObject;
}

export function pluginManifest(wasm: Uint8Array, signing: Omit<PluginSigning, "privateKey">): PluginManifest {
  return {
    v: WIRE_VERSION,
    kind: "plugin",
    name: signing.name,
    version: signing.version,
    sha256: createHash("sha256").update(wasm).digest("hex"),
    size: wasm.byteLength,
    keyId: signing.keyId,
    metrics: signing.metrics,
  };
}

export function signManifest(manifest: string, privateKey: KeyObject): string {
  return sign("sha256", Buffer.from(manifest), { key: privateKey, dsaEncoding: "ieee-p1363" }).toString("base64");
}

export function pluginPackage(
  wasm: Uint8Array,
  signing: PluginSigning,
  options: { config?: PluginConfig; enable?: boolean } = {},
): PluginPackage {
  const manifest = JSON.stringify(pluginManifest(wasm, signing));
  return {
    v: WIRE_VERSION,
    manifest,
    signature: signManifest(manifest, signing.privateKey),
    wasm: Buffer.from(wasm).toString("base64"),
    ...options,
  };
}

/** The public key as the device's pluginKeys config names it: keyId:base64 of the uncompressed point. */
export function trustedKeyEntry(keyId: string, publicKey: KeyObject): string {
  const jwk = publicKey.export({ format: "jwk" });
  if (jwk.crv !== "P-256" || !jwk.x || !jwk.y) throw new Error("a P-256 public key is needed");
  const point = Buffer.concat([Buffer.of(4), Buffer.from(jwk.x, "base64url"), Buffer.from(jwk.y, "base64url")]);
  return `${keyId}:${point.toString("base64")}`;
}
