// Artifacts on the gateway's disk, by SHA-256: fetched from the cloud once however many devices ask
// (one fetch per artifact in flight), resumed from what a cut fetch left (`<sha>.part`, a byte-range
// request), verified against the SHA-256 before they are served, and evicted least recently used
// beyond ARTIFACT_CACHE_MAX_BYTES. A site's uplink carries each artifact once.

import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { mkdir, open, readdir, rename, rm, stat, truncate } from "node:fs/promises";
import { join } from "node:path";
import type { Logger } from "pino";
import type { GatewayMetrics } from "../metrics.ts";
import { CloudError } from "../uplink/cloud-client.ts";
import type { ArtifactChannel } from "./artifact-channel.ts";

export interface CachedArtifact {
  sha256: string;
  size: number;
  path: string;
}

export interface ArtifactCacheOptions {
  dir: string;
  maxBytes: number;
  channel: Pick<ArtifactChannel, "download">;
  logger: Logger;
  metrics: GatewayMetrics;
  /** How long a failed fetch is remembered before a new request tries again. */
  failureHoldMs?: number;
}

/** Why an artifact cannot be served now; `retryable` false when asking again will not help. */
export class ArtifactUnavailable extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly retryable: boolean,
  ) {
    super(message);
  }
}

const SHA256 = /^[0-9a-f]{64}$/;

async function digestOf(path: string): Promise<string> {
  const hash = createHash("sha256");
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest("hex");
}

export class ArtifactCache {
  private readonly ready = new Map<string, CachedArtifact & { usedAt: number; verified: boolean }>();
  private readonly fetching = new Map<string, Promise<CachedArtifact>>();
  private readonly failures = new Map<string, { error: ArtifactUnavailable; until: number }>();
  private readonly stopping = new AbortController();
  /** A use counter, not a clock: uses within one millisecond still have an order. */
  private uses = 0;

  private constructor(private readonly options: ArtifactCacheOptions) {}

  /** Opens the cache directory; artifacts already there are served after their SHA-256 is checked again. */
  static async open(options: ArtifactCacheOptions): Promise<ArtifactCache> {
    await mkdir(options.dir, { recursive: true });
    const cache = new ArtifactCache(options);
    for (const name of await readdir(options.dir)) {
      if (!SHA256.test(name)) continue;
      const path = join(options.dir, name);
      cache.ready.set(name, { sha256: name, size: (await stat(path)).size, path, usedAt: 0, verified: false });
    }
    cache.updateGauge();
    return cache;
  }

  get bytes(): number {
    let total = 0;
    for (const entry of this.ready.values()) total += entry.size;
    return total;
  }

  /** The artifact on disk, fetched (or joined to the fetch in flight) when it is not there yet. */
  async get(sha256: string): Promise<CachedArtifact> {
    const entry = this.ready.get(sha256);
    if (entry?.verified) {
      entry.usedAt = ++this.uses;
      return entry;
    }
    const failure = this.lastFailure(sha256);
    if (failure) throw failure;
    let pending = this.fetching.get(sha256);
    if (!pending) {
      pending = (entry ? this.reverify(entry) : this.fetch(sha256)).finally(() => this.fetching.delete(sha256));
      this.fetching.set(sha256, pending);
    }
    return pending;
  }

  /** Whether get() would answer at once. */
  isReady(sha256: string): boolean {
    return this.ready.get(sha256)?.verified === true;
  }

  /** The failure of the last fetch, while it is remembered. */
  lastFailure(sha256: string): ArtifactUnavailable | undefined {
    const failure = this.failures.get(sha256);
    return failure && failure.until > Date.now() ? failure.error : undefined;
  }

  /** Starts fetching in the background (an offer announces what devices will ask for). */
  prefetch(sha256: string): void {
    if (this.isReady(sha256) || this.lastFailure(sha256)) return;
    this.get(sha256).catch((error: unknown) =>
      this.options.logger.warn(
        { sha256, err: error instanceof Error ? error.message : String(error) },
        "prefetch failed",
      ),
    );
  }

  /** `length` bytes at `offset` of a cached artifact. */
  async read(artifact: CachedArtifact, offset: number, length: number): Promise<Buffer> {
    const file = await open(artifact.path, "r");
    try {
      const buffer = Buffer.alloc(length);
      const { bytesRead } = await file.read(buffer, 0, length, offset);
      return buffer.subarray(0, bytesRead);
    } finally {
      await file.close();
    }
  }

  close(): void {
    this.stopping.abort();
  }

  private async reverify(entry: CachedArtifact & { verified: boolean; usedAt: number }): Promise<CachedArtifact> {
    if ((await digestOf(entry.path)) === entry.sha256) {
      entry.verified = true;
      entry.usedAt = ++this.uses;
      return entry;
    }
    this.options.logger.error({ sha256: entry.sha256 }, "cached artifact corrupted on disk; fetching it again");
    this.ready.delete(entry.sha256);
    await rm(entry.path, { force: true });
    return this.fetch(entry.sha256);
  }

  private async fetch(sha256: string): Promise<CachedArtifact> {
    const { dir, channel, logger, metrics } = this.options;
    const part = join(dir, `${sha256}.part`);
    const have = await stat(part).then(
      (found) => found.size,
      () => 0,
    );
    metrics.inc("kestrel_gateway_artifact_fetches_total", { resumed: String(have > 0) });
    let size = have;
    try {
      const download = await channel.download(sha256, have, this.stopping.signal);
      size = download.size;
      if (download.start !== 0 && download.start !== have)
        throw new ArtifactUnavailable("bad_range", `asked from byte ${have}, got from ${download.start}`, true);
      // The cloud ignored the range: start over.
      if (download.start === 0 && have > 0) await truncate(part, 0);
      const file = await open(part, download.start === 0 ? "w" : "a");
      try {
        for await (const chunk of download.body) {
          await file.write(chunk);
          metrics.inc("kestrel_gateway_artifact_upstream_bytes_total", {}, chunk.length);
        }
      } finally {
        await file.close();
      }
    } catch (error) {
      // 416 past the end: the part file was complete when the gateway stopped before keeping it.
      const complete = error instanceof CloudError && error.status === 416 && have > 0;
      if (!complete) throw this.failed(sha256, error);
    }
    const digest = await digestOf(part);
    if (digest !== sha256) {
      await rm(part, { force: true });
      metrics.inc("kestrel_gateway_artifact_fetch_failures_total", { code: "digest_mismatch" });
      throw this.failed(
        sha256,
        new ArtifactUnavailable("digest_mismatch", `fetched artifact hashes to ${digest}`, true),
      );
    }
    const path = join(dir, sha256);
    await rename(part, path);
    const entry = { sha256, size, path, usedAt: ++this.uses, verified: true };
    this.ready.set(sha256, entry);
    logger.info({ sha256, size, resumedFrom: have }, "artifact cached");
    await this.evict(sha256);
    this.updateGauge();
    return entry;
  }

  /** Remembers a failure for a moment, so a fleet asking at once does not hammer the cloud. */
  private failed(sha256: string, error: unknown): ArtifactUnavailable {
    const unavailable =
      error instanceof ArtifactUnavailable
        ? error
        : error instanceof CloudError
          ? new ArtifactUnavailable(error.code, error.message, error.retryable)
          : new ArtifactUnavailable("fetch_failed", error instanceof Error ? error.message : String(error), true);
    this.options.metrics.inc("kestrel_gateway_artifact_fetch_failures_total", { code: unavailable.code });
    this.options.logger.warn({ sha256, code: unavailable.code, err: unavailable.message }, "artifact fetch failed");
    this.failures.set(sha256, { error: unavailable, until: Date.now() + (this.options.failureHoldMs ?? 1000) });
    return unavailable;
  }

  /** Least recently used first, never the artifact just fetched. */
  private async evict(keep: string): Promise<void> {
    const entries = [...this.ready.values()].sort((a, b) => a.usedAt - b.usedAt);
    let total = this.bytes;
    for (const entry of entries) {
      if (total <= this.options.maxBytes) return;
      if (entry.sha256 === keep) continue;
      this.ready.delete(entry.sha256);
      await rm(entry.path, { force: true });
      total -= entry.size;
      this.options.metrics.inc("kestrel_gateway_artifact_evictions_total");
      this.options.logger.info({ sha256: entry.sha256, size: entry.size }, "artifact evicted from the cache");
    }
  }

  private updateGauge(): void {
    this.options.metrics.set("kestrel_gateway_artifact_cache_bytes", this.bytes);
  }
}
