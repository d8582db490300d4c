// The gateway's part of the artifact protocol for the simulator tests, against the test broker: an
// MQTT client that answers d/+/artifact/get from artifacts held in memory (binary chunks with the
// wire's header) and publishes offers; plus what the cloud does for them: P-256 keys, signed
// manifests, trust records and downgrade grants. The tests make it lie on purpose (other bytes than
// the manifest's, a shorter copy) to see the device refuse.

import { createHash, generateKeyPairSync, type KeyObject, sign } from "node:crypto";
import {
  ARTIFACT_LIMITS,
  type ArtifactManifest,
  type ArtifactOffer,
  artifactTopics,
  CHUNK_HEADER_BYTES,
  ChunkStatus,
  parseArtifactChunkRequest,
  type SignedText,
  type TrustRecord,
  writeChunkHeader,
} from "@kestrel/wire/artifacts";
import { buildEsp32Image, type Esp32ImageSpec, readEsp32Identity } from "@kestrel/wire/esp32-image";
import { connectAsync, type MqttClient } from "mqtt";
import { nodeSha256 } from "../sim/crypto.ts";

export function sha256Hex(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}

export function image(spec: Partial<Esp32ImageSpec> & { version: string }): Buffer {
  return Buffer.from(
    buildEsp32Image({ chip: "esp32", projectName: "kestrel", size: 64 * 1024, seed: 1, ...spec }, nodeSha256),
  );
}

/** An organization signing key as the cloud keeps one. */
export class SigningKey {
  readonly keyId: string;
  readonly publicKey: string;
  readonly #private: KeyObject;

  constructor() {
    const { publicKey, privateKey } = generateKeyPairSync("ec", { namedCurve: "prime256v1" });
    const jwk = publicKey.export({ format: "jwk" });
    this.publicKey = `04${Buffer.from(jwk.x as string, "base64url").toString("hex")}${Buffer.from(jwk.y as string, "base64url").toString("hex")}`;
    this.keyId = sha256Hex(Buffer.from(this.publicKey, "hex")).slice(0, 16);
    this.#private = privateKey;
  }

  /** The device's config entry provisioning this key. */
  get provisioned(): string {
    return `${this.keyId}:${this.publicKey}`;
  }

  sign(text: string): SignedText {
    return {
      text,
      sig: sign("sha256", Buffer.from(text), { key: this.#private, dsaEncoding: "ieee-p1363" }).toString("hex"),
    };
  }

  /** A manifest for these bytes (version from the image's esp_app_desc_t), fields overridden as asked. */
  manifest(bytes: Uint8Array, overrides: Partial<ArtifactManifest> = {}): SignedText {
    const identity = readEsp32Identity(bytes);
    const manifest: ArtifactManifest = {
      v: 1,
      artifact: "art_test",
      kind: "firmware",
      name: "kestrel-fw",
      version: identity.ok ? identity.value.app.version : "1.0.0",
      target: { chip: "esp32", board: "*" },
      size: bytes.length,
      sha256: sha256Hex(bytes),
      keyId: this.keyId,
      issued: Date.now(),
      ...overrides,
    };
    return this.sign(JSON.stringify(manifest));
  }

  /** A rotation record signed by this (the old) key: trust `next`, drop this one. */
  rotateTo(next: SigningKey, seq: number): SignedText {
    const record: TrustRecord = {
      v: 1,
      type: "trust",
      seq,
      add: [{ keyId: next.keyId, publicKey: next.publicKey }],
      retire: [this.keyId],
      keyId: this.keyId,
      issued: Date.now(),
    };
    return this.sign(JSON.stringify(record));
  }

  downgradeGrant(campaign: string, sha256: string): SignedText {
    return this.sign(
      JSON.stringify({ v: 1, type: "downgrade", campaign, sha256, keyId: this.keyId, issued: Date.now() }),
    );
  }
}

export function offer(campaign: string, manifest: SignedText, extra: Partial<ArtifactOffer> = {}): ArtifactOffer {
  return { v: 1, campaign, manifest, trust: [], windowS: 0, ...extra };
}

/** What the peer serves under a SHA-256: the bytes, which a test may make differ from the manifest's. */
export class ArtifactPeer {
  readonly requests: Array<{ deviceId: string; offset: number; length: number }> = [];
  bytesServed = 0;
  readonly #artifacts = new Map<string, Buffer>();

  private constructor(readonly client: MqttClient) {
    client.on("message", (topic, payload) => {
      const deviceId = topic.split("/")[1] as string;
      const request = parseArtifactChunkRequest(payload.toString());
      if (!request.ok) return;
      const { sha256, offset, length } = request.value;
      this.requests.push({ deviceId, offset, length });
      const bytes = this.#artifacts.get(sha256);
      const reply = (message: Buffer) => client.publish(artifactTopics.chunk(deviceId), message, { qos: 0 });
      if (!bytes || offset >= bytes.length) {
        const refusal = Buffer.alloc(CHUNK_HEADER_BYTES);
        const status = bytes ? ChunkStatus.badRange : ChunkStatus.notFound;
        writeChunkHeader(refusal, { status, retryAfterMs: 0, offset, size: bytes?.length ?? 0, shaPrefix: sha256 });
        reply(refusal);
        return;
      }
      const end = Math.min(bytes.length, offset + length);
      for (let at = offset; at < end; at += ARTIFACT_LIMITS.chunkBytes) {
        const data = bytes.subarray(at, Math.min(end, at + ARTIFACT_LIMITS.chunkBytes));
        const message = Buffer.alloc(CHUNK_HEADER_BYTES + data.length);
        writeChunkHeader(message, {
          status: ChunkStatus.ok,
          retryAfterMs: 0,
          offset: at,
          size: bytes.length,
          shaPrefix: sha256,
        });
        data.copy(message, CHUNK_HEADER_BYTES);
        this.bytesServed += data.length;
        reply(message);
      }
    });
  }

  static async start(brokerUrl: string, clientId: string, token: string): Promise<ArtifactPeer> {
    const client = await connectAsync(brokerUrl, { clientId, username: clientId, password: token, reconnectPeriod: 0 });
    await client.subscribeAsync("d/+/artifact/get", { qos: 0 });
    return new ArtifactPeer(client);
  }

  /** Serves bytes under their SHA-256, or under another one (a gateway with a corrupted copy). */
  serve(bytes: Buffer, as = sha256Hex(bytes)): void {
    this.#artifacts.set(as, bytes);
  }

  publishOffer(deviceId: string, offer: ArtifactOffer): Promise<unknown> {
    return this.client.publishAsync(artifactTopics.offer(deviceId), JSON.stringify(offer), { qos: 1 });
  }

  close(): Promise<void> {
    return this.client.endAsync(true);
  }
}
