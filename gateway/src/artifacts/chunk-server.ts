// Serves artifact chunks to devices from the cache, over their MQTT connection: a device asks for
// up to four 4 KB chunks at an offset (d/{id}/artifact/get) and gets them as binary messages on
// d/{id}/artifact/chunk. Asking from any offset is the resume, after a lost link or a reboot.
// At most maxDownloads devices download at once; the others are told to come back later, so a
// site's LAN (and the gateway) is not flooded when a whole fleet starts.

import {
  ARTIFACT_LIMITS,
  type ArtifactChunkRequest,
  CHUNK_HEADER_BYTES,
  ChunkStatus,
  writeChunkHeader,
} from "@kestrel/wire/artifacts";
import type { Logger } from "pino";
import type { GatewayMetrics } from "../metrics.ts";
import type { ArtifactCache } from "./artifact-cache.ts";

export interface ChunkServerOptions {
  cache: ArtifactCache;
  /** Devices downloading at once; more are told busy. */
  maxDownloads: number;
  /** A download with no request for this long no longer holds its place. */
  idleMs: number;
  logger: Logger;
  metrics: GatewayMetrics;
}

/** How long a device told `busy` or `unavailable` waits before asking again. */
const BUSY_RETRY_MS = 2000;
const UNAVAILABLE_RETRY_MS = 1000;
/** How long a request for an artifact not cached yet waits for the cache to fill before the answer is "later". */
const COLD_WAIT_MS = 1500;

export class ChunkServer {
  /** Devices downloading now, by id: the artifact and when they last asked. */
  private readonly downloads = new Map<string, { sha256: string; lastAt: number }>();

  constructor(private readonly options: ChunkServerOptions) {}

  get activeDownloads(): number {
    return this.downloads.size;
  }

  /** The messages answering one request: chunk messages, or one header-only message saying why not. */
  async serve(deviceId: string, request: ArtifactChunkRequest): Promise<Buffer[]> {
    const { cache, metrics } = this.options;
    const now = Date.now();
    this.expireIdle(now);
    const { sha256, offset, length } = request;
    const refusal = (status: number, retryAfterMs = 0, size = 0): Buffer[] => {
      const message = Buffer.alloc(CHUNK_HEADER_BYTES);
      writeChunkHeader(message, { status, retryAfterMs, offset, size, shaPrefix: sha256 });
      metrics.inc("kestrel_gateway_artifact_refusals_total", { status: String(status) });
      return [message];
    };
    if (!this.downloads.has(deviceId) && this.downloads.size >= this.options.maxDownloads)
      return refusal(ChunkStatus.busy, BUSY_RETRY_MS + Math.floor(Math.random() * BUSY_RETRY_MS));
    // The place is taken before any wait, so devices arriving together cannot all slip past the limit.
    this.downloads.set(deviceId, { sha256, lastAt: now });
    const cached = cache.isReady(sha256);
    metrics.inc("kestrel_gateway_artifact_cache_requests_total", { result: cached ? "hit" : "miss" });
    if (!cached && !(await this.fetchedSoon(sha256))) {
      if (cache.lastFailure(sha256)?.retryable === false) return refusal(ChunkStatus.notFound);
      // Still coming from the cloud: the device asks again shortly, the fetch goes on meanwhile.
      return refusal(ChunkStatus.unavailable, UNAVAILABLE_RETRY_MS);
    }
    const artifact = await cache.get(sha256);
    if (offset >= artifact.size) return refusal(ChunkStatus.badRange, 0, artifact.size);
    const bytes = await cache.read(artifact, offset, Math.min(length, artifact.size - offset));
    const messages: Buffer[] = [];
    for (let at = 0; at < bytes.length; at += ARTIFACT_LIMITS.chunkBytes) {
      const data = bytes.subarray(at, at + ARTIFACT_LIMITS.chunkBytes);
      const message = Buffer.alloc(CHUNK_HEADER_BYTES + data.length);
      writeChunkHeader(message, {
        status: ChunkStatus.ok,
        retryAfterMs: 0,
        offset: offset + at,
        size: artifact.size,
        shaPrefix: sha256,
      });
      data.copy(message, CHUNK_HEADER_BYTES);
      messages.push(message);
    }
    metrics.inc("kestrel_gateway_artifact_chunks_served_total", {}, messages.length);
    metrics.inc("kestrel_gateway_artifact_bytes_served_total", {}, bytes.length);
    // The last bytes went out: the device's place is free for the next one.
    if (offset + bytes.length >= artifact.size) this.downloads.delete(deviceId);
    metrics.set("kestrel_gateway_artifact_downloads_active", this.downloads.size);
    return messages;
  }

  /**
   * Starts (or joins) the cache fill and waits for it a moment: a small artifact or a fast cloud is
   * there before the device would have asked again. Only this device's packets wait meanwhile.
   */
  private async fetchedSoon(sha256: string): Promise<boolean> {
    const { cache } = this.options;
    if (cache.lastFailure(sha256)) return false;
    let timer: NodeJS.Timeout | undefined;
    const gaveUp = new Promise<boolean>((resolve) => {
      timer = setTimeout(() => resolve(false), COLD_WAIT_MS);
    });
    const fetched = cache.get(sha256).then(
      () => true,
      () => false,
    );
    const ready = await Promise.race([fetched, gaveUp]);
    clearTimeout(timer);
    return ready;
  }

  /** The device left: its place is free at once. */
  deviceGone(deviceId: string): void {
    this.downloads.delete(deviceId);
    this.options.metrics.set("kestrel_gateway_artifact_downloads_active", this.downloads.size);
  }

  private expireIdle(now: number): void {
    for (const [deviceId, download] of this.downloads)
      if (now - download.lastAt > this.options.idleMs) this.downloads.delete(deviceId);
  }
}
