// The gateway's artifact path against the real cloud, with mqtt.js clients in the devices' place:
// offers reach devices listening on their offer topic, chunks come from a cache filled once per
// artifact (a cut fill resumes by byte range), every chunk is served from any offset, downloads
// beyond the limit are told busy, reports reach the campaign, and a cache fill that does not hash
// to its SHA-256 is never served.

import assert from "node:assert/strict";
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { type ArtifactOffer, artifactTopics, ChunkStatus, readChunkHeader } from "@kestrel/wire/artifacts";
import { connectAsync, type MqttClient } from "mqtt";
import { pino } from "pino";
import { ArtifactCache, ArtifactUnavailable } from "../src/artifacts/artifact-cache.ts";
import { loadGatewayConfig } from "../src/config.ts";
import { type Gateway, startGateway } from "../src/gateway.ts";
import { GatewayMetrics } from "../src/metrics.ts";
import { startMosquitto } from "./mosquitto-broker.ts";
import { firmwareImage, OtaOperator, sha256Of, type UploadedArtifact } from "./ota-fixture.ts";
import { RealCloud, tempDir } from "./real-cloud.ts";
import { until } from "./until.ts";

const DEVICES = ["ota-a", "ota-b", "ota-c"];
const silent = pino({ level: "silent" });

/** A device as far as the gateway can tell: subscribed to its offer and chunk topics. */
class TestDevice {
  readonly offers: ArtifactOffer[] = [];
  private readonly chunks: Buffer[] = [];

  private constructor(
    readonly deviceId: string,
    readonly client: MqttClient,
  ) {
    client.on("message", (topic, payload) => {
      if (topic === artifactTopics.offer(deviceId)) this.offers.push(JSON.parse(payload.toString()));
      else if (topic === artifactTopics.chunk(deviceId)) this.chunks.push(payload);
    });
  }

  static async connect(port: number, deviceId: string, token: string): Promise<TestDevice> {
    const client = await connectAsync(`mqtt://127.0.0.1:${port}`, {
      clientId: deviceId,
      username: deviceId,
      password: token,
      reconnectPeriod: 0,
    });
    await client.subscribeAsync([artifactTopics.offer(deviceId), artifactTopics.chunk(deviceId)], { qos: 0 });
    return new TestDevice(deviceId, client);
  }

  /** Asks for length bytes at offset and collects the answer (data, or a status). */
  async get(
    sha256: string,
    offset: number,
    length: number,
  ): Promise<{ status: number; data: Buffer; retryAfterMs: number }> {
    this.chunks.length = 0;
    // QoS 1, as the firmware asks (a bridge only takes QoS 1 messages through its acknowledged path).
    await this.client.publishAsync(
      artifactTopics.get(this.deviceId),
      JSON.stringify({ v: 1, sha256, offset, length }),
      {
        qos: 1,
      },
    );
    // Done when the last chunk reaches the end asked for (or the artifact's end), or at a refusal.
    const complete = () => {
      const last = this.chunks.at(-1);
      const header = last && readChunkHeader(last);
      if (!header) return false;
      if (header.status !== ChunkStatus.ok) return true;
      const end = header.offset + last.length - 20;
      return end >= Math.min(offset + length, header.size);
    };
    await until(complete, "chunks", 10_000);
    const headers = this.chunks.map((chunk) => readChunkHeader(chunk));
    const first = headers[0];
    assert.ok(first);
    if (first.status !== ChunkStatus.ok)
      return { status: first.status, data: Buffer.alloc(0), retryAfterMs: first.retryAfterMs };
    assert.deepEqual(
      headers.map((header) => header?.offset),
      headers.map((_, i) => offset + i * 4096),
      "chunks in order",
    );
    return { status: 0, data: Buffer.concat(this.chunks.map((chunk) => chunk.subarray(20))), retryAfterMs: 0 };
  }

  /** The whole artifact, asking again while the gateway says unavailable or busy. */
  async download(sha256: string, size: number): Promise<Buffer> {
    const parts: Buffer[] = [];
    let offset = 0;
    while (offset < size) {
      const answer = await this.get(sha256, offset, Math.min(16_384, size - offset));
      if (answer.status === ChunkStatus.unavailable || answer.status === ChunkStatus.busy) {
        await new Promise((resolve) => setTimeout(resolve, Math.min(answer.retryAfterMs, 300)));
        continue;
      }
      assert.equal(answer.status, 0, `status at ${offset}`);
      parts.push(answer.data);
      offset += answer.data.length;
    }
    return Buffer.concat(parts);
  }

  report(campaign: string, sha256: string, status: string): Promise<unknown> {
    return this.client.publishAsync(
      artifactTopics.status(this.deviceId),
      JSON.stringify({ v: 1, campaign, sha256, status, running: "1.0.0" }),
      { qos: 1 },
    );
  }
}

describe("artifacts through the gateway", () => {
  let cloud: RealCloud;
  let gateway: Gateway;
  let operator: OtaOperator;
  let dataDir: string;
  const devices: TestDevice[] = [];
  let artifact: UploadedArtifact;
  let image: Buffer;

  const token = (deviceId: string) => cloud.credentials.devices.find((d) => d.deviceId === deviceId)?.token ?? "";
  const metric = (name: string, labels: Record<string, string> = {}) => gateway.metrics.value(name, labels);

  before(async () => {
    // An offer the gateway's abandoned poll took is made again soon.
    cloud = await RealCloud.start(DEVICES, { OTA_OFFER_LEASE_MS: "2000" });
    dataDir = await tempDir("gateway-artifacts");
    gateway = await startGateway(
      loadGatewayConfig({
        MQTT_PORT: "0",
        GATEWAY_HTTP_PORT: "0",
        CLOUD_URL: cloud.url,
        GATEWAY_KEY: cloud.credentials.gatewayKey,
        GATEWAY_DATA_DIR: dataDir,
        ARTIFACT_MAX_DOWNLOADS: "2",
      }),
      silent,
    );
    operator = await OtaOperator.signIn(cloud.url, cloud.credentials.admin);
    await operator.createSigningKey();
    image = firmwareImage({ version: "1.1.0", size: 150_000, seed: 11 });
    artifact = await operator.uploadSigned(image);
    for (const deviceId of DEVICES)
      devices.push(await TestDevice.connect(gateway.mqttPort as number, deviceId, token(deviceId)));
  });

  after(async () => {
    for (const device of devices) await device.client.endAsync(true).catch(() => undefined);
    await gateway?.stop();
    await cloud?.stop();
  });

  test("offers reach listening devices; the artifact is fetched from the cloud once for all of them", async () => {
    const { campaignId } = await operator.startCampaign({
      artifactId: artifact.artifactId,
      target: { devices: DEVICES.slice(0, 2) },
      stages: [{ percent: 100, soakSeconds: 0 }],
    });
    const [a, b, c] = devices as [TestDevice, TestDevice, TestDevice];
    await until(() => a.offers.length > 0 && b.offers.length > 0, "offers to a and b", 15_000);
    assert.equal(c.offers.length, 0, "a device outside the campaign gets nothing");
    assert.equal((a.offers[0] as ArtifactOffer).campaign, campaignId);

    const [first, second] = await Promise.all([
      a.download(artifact.sha256, artifact.size),
      b.download(artifact.sha256, artifact.size),
    ]);
    assert.equal(sha256Of(first), artifact.sha256);
    assert.ok(second.equals(first));
    assert.equal(
      await metric("kestrel_gateway_artifact_fetches_total", { resumed: "false" }),
      1,
      "one fetch from the cloud",
    );
    assert.equal(
      await metric("kestrel_gateway_artifact_upstream_bytes_total"),
      artifact.size,
      "upstream bytes = one image",
    );
    assert.equal(await metric("kestrel_gateway_artifact_bytes_served_total"), 2 * artifact.size);
    // Each device asked for its 16 KB windows; only a request made before the fill finished missed the cache.
    const windows = 2 * Math.ceil(artifact.size / 16_384);
    const hits = await metric("kestrel_gateway_artifact_cache_requests_total", { result: "hit" });
    const misses = await metric("kestrel_gateway_artifact_cache_requests_total", { result: "miss" });
    assert.ok(hits + misses >= windows && hits >= windows - 2, `${hits} hits, ${misses} misses`);
    assert.equal(await metric("kestrel_gateway_artifact_downloads_active"), 0, "finished downloads free their place");

    for (const status of ["notified", "downloading", "verifying", "installed", "rebooting", "confirmed"]) {
      await a.report(campaignId, artifact.sha256, status);
      await b.report(campaignId, artifact.sha256, status);
    }
    const done = await until(
      async () => {
        const state = await operator.campaign(campaignId);
        return state.counts.confirmed === 2 ? state : undefined;
      },
      "reports applied in the cloud",
      15_000,
    );
    assert.equal(done.counts.confirmed, 2);
  });

  test("chunks come from any offset, to the end and no further; an unknown artifact is not found", async () => {
    const [a] = devices as [TestDevice];
    const tail = await a.get(artifact.sha256, artifact.size - 100, 16_384);
    assert.equal(tail.status, 0);
    assert.ok(tail.data.equals(image.subarray(artifact.size - 100)));
    const middle = await a.get(artifact.sha256, 12_345, 5000);
    assert.ok(middle.data.equals(image.subarray(12_345, 17_345)));
    assert.equal((await a.get(artifact.sha256, artifact.size, 10)).status, ChunkStatus.badRange);
    const unknown = "0".repeat(64);
    assert.equal((await a.get(unknown, 0, 4096)).status, ChunkStatus.notFound, "looked up in the cloud: not there");
  });

  test("beyond ARTIFACT_MAX_DOWNLOADS a device is told busy until a place frees", async () => {
    const [a, b, c] = devices as [TestDevice, TestDevice, TestDevice];
    await a.get(artifact.sha256, 0, 4096);
    await b.get(artifact.sha256, 0, 4096);
    const busy = await c.get(artifact.sha256, 0, 4096);
    assert.equal(busy.status, ChunkStatus.busy);
    assert.ok(busy.retryAfterMs >= 2000);
    // a reads to the end: its place frees.
    await a.get(artifact.sha256, artifact.size - 10, 10);
    assert.equal((await c.get(artifact.sha256, 0, 4096)).status, 0);
  });

  test("a device may not ask through another device's topic: it is disconnected", async () => {
    const intruder = await TestDevice.connect(gateway.mqttPort as number, "ota-c", token("ota-c"));
    const closed = new Promise<void>((resolve) => intruder.client.once("close", () => resolve()));
    intruder.client.publish(
      artifactTopics.get("ota-b"),
      JSON.stringify({ v: 1, sha256: artifact.sha256, offset: 0, length: 10 }),
      {
        qos: 1,
      },
    );
    await closed;
    assert.ok((await metric("kestrel_gateway_acl_denials_total", { action: "publish" })) >= 1);
    await intruder.client.endAsync(true);
  });

  test("a cut cache fill resumes with a byte range; the rest comes from the cloud, not the whole", async () => {
    const second = firmwareImage({ version: "1.2.0", size: 120_000, seed: 12 });
    const uploaded = await operator.upload(second);
    // What a gateway stopped mid-fetch leaves behind.
    await mkdir(join(dataDir, "artifacts"), { recursive: true });
    await writeFile(join(dataDir, "artifacts", `${uploaded.sha256}.part`), second.subarray(0, 50_000));
    const before = await metric("kestrel_gateway_artifact_upstream_bytes_total");
    const cached = await gateway.artifactCache.get(uploaded.sha256);
    assert.equal(cached.size, second.length);
    assert.equal(await metric("kestrel_gateway_artifact_fetches_total", { resumed: "true" }), 1);
    assert.equal((await metric("kestrel_gateway_artifact_upstream_bytes_total")) - before, second.length - 50_000);
  });
});

describe("artifact cache", () => {
  test("a fill whose bytes do not hash to the SHA-256 asked for is dropped and never served", async () => {
    const dir = await tempDir("cache-digest");
    const good = firmwareImage({ version: "1.0.0", size: 5000, seed: 1 });
    const claimed = sha256Of(firmwareImage({ version: "1.0.0", size: 5000, seed: 2 }));
    const cache = await ArtifactCache.open({
      dir,
      maxBytes: 10_000_000,
      logger: silent,
      metrics: new GatewayMetrics(),
      failureHoldMs: 0,
      channel: {
        download: async () => ({
          size: good.length,
          start: 0,
          body: new Response(new Uint8Array(good)).body as ReadableStream,
        }),
      },
    });
    await assert.rejects(
      cache.get(claimed),
      (error: unknown) => error instanceof ArtifactUnavailable && error.code === "digest_mismatch",
    );
    assert.equal(cache.isReady(claimed), false);
    assert.equal(cache.bytes, 0);
  });

  test("beyond its size the least recently used artifact is evicted", async () => {
    const dir = await tempDir("cache-evict");
    const images = [1, 2, 3].map((seed) => firmwareImage({ version: "1.0.0", size: 40_000, seed }));
    const bySha = new Map(images.map((bytes) => [sha256Of(bytes), bytes]));
    const cache = await ArtifactCache.open({
      dir,
      maxBytes: 100_000,
      logger: silent,
      metrics: new GatewayMetrics(),
      channel: {
        download: async (sha) => {
          const bytes = bySha.get(sha) as Buffer;
          return { size: bytes.length, start: 0, body: new Response(new Uint8Array(bytes)).body as ReadableStream };
        },
      },
    });
    const [one, two, three] = [...bySha.keys()] as [string, string, string];
    await cache.get(one);
    await cache.get(two);
    await cache.get(one);
    await cache.get(three);
    assert.equal(cache.isReady(two), false, "the least recently used went");
    assert.ok(cache.isReady(one) && cache.isReady(three));
  });
});

describe("artifacts through an external broker (bridge mode)", () => {
  test("a device on Mosquitto asks for chunks and gets them, the gateway answering through its bridge client", async () => {
    const dataDir = await tempDir("gateway-artifacts-bridge");
    const mosquitto = await startMosquitto(dataDir);
    const cloud = await RealCloud.start(["br-ota"]);
    const gateway = await startGateway(
      loadGatewayConfig({
        EXTERNAL_BROKER_URL: `mqtt://127.0.0.1:${mosquitto.port}`,
        EXTERNAL_BROKER_CLIENT_ID: "kestrel-gateway-ota",
        GATEWAY_HTTP_PORT: "0",
        CLOUD_URL: cloud.url,
        GATEWAY_KEY: cloud.credentials.gatewayKey,
        GATEWAY_DATA_DIR: join(dataDir, "gateway"),
      }),
      silent,
    );
    try {
      const operator = await OtaOperator.signIn(cloud.url, cloud.credentials.admin);
      const bytes = firmwareImage({ version: "1.0.0", size: 30_000, seed: 41 });
      const artifact = await operator.upload(bytes);
      // Mosquitto allows anonymous clients here; its ACLs stand in for the gateway's in production.
      const device = await TestDevice.connect(mosquitto.port, "br-ota", "");
      try {
        const downloaded = await device.download(artifact.sha256, artifact.size);
        assert.ok(downloaded.equals(bytes));
        assert.equal(await gateway.metrics.value("kestrel_gateway_artifact_upstream_bytes_total"), bytes.length);
      } finally {
        await device.client.endAsync(true);
      }
    } finally {
      await gateway.stop();
      await cloud.stop();
      await mosquitto.stop();
    }
  });
});
