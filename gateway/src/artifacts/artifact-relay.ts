// Relays artifact offers and reports between the cloud and the devices connected here: long-polls
// the cloud for offers to devices subscribed to d/{id}/artifact, starts caching the artifact and
// publishes the offer (QoS 1); carries the devices' status reports back durably, like command acks.

import { type ArtifactOffer, type ArtifactStatusReport, parseArtifactManifest } from "@kestrel/wire/artifacts";
import type { Logger } from "pino";
import { DevicePoll } from "../downlink/device-poll.ts";
import { DurableRelay } from "../downlink/durable-relay.ts";
import type { GatewayMetrics } from "../metrics.ts";
import type { DiskQueue } from "../uplink/disk-queue.ts";
import type { ArtifactCache } from "./artifact-cache.ts";
import type { ArtifactChannel, OfferForDevice, ReportFromDevice } from "./artifact-channel.ts";

export interface ArtifactRelayOptions {
  channel: ArtifactChannel;
  cache: ArtifactCache;
  /** Publishes the offer on the device's offer topic; resolves once the broker took it. */
  publish(deviceId: string, offer: ArtifactOffer): Promise<void>;
  /** Holds reports until the cloud took them; the relay closes it when it stops. */
  reports: DiskQueue;
  logger: Logger;
  metrics: GatewayMetrics;
  waitSeconds?: number;
  retryMinMs?: number;
  retryMaxMs?: number;
}

export class ArtifactRelay {
  private readonly stopping = new AbortController();
  private readonly poll: DevicePoll<OfferForDevice>;
  private readonly reports: DurableRelay<ReportFromDevice>;
  private loops: Promise<void>[] = [];

  constructor(private readonly options: ArtifactRelayOptions) {
    const { channel, logger, metrics } = options;
    const waitSeconds = options.waitSeconds ?? 25;
    const retry = {
      retryMinMs: options.retryMinMs ?? 1000,
      retryMaxMs: options.retryMaxMs ?? 30_000,
      stopping: this.stopping.signal,
      logger,
      metrics,
    };
    this.poll = new DevicePoll({
      ...retry,
      operation: "offer_poll",
      fetch: async (deviceIds, signal) => {
        const { offers, invalid } = await channel.pollOffers(deviceIds, waitSeconds, signal);
        if (invalid > 0) logger.warn({ invalid }, "artifact offers from the cloud failed validation and were skipped");
        return offers;
      },
      deliver: (item) => this.deliver(item),
    });
    this.reports = new DurableRelay({
      ...retry,
      queue: options.reports,
      send: (reports) => channel.sendReports(reports),
      decode: decodeReport,
      what: "artifact reports",
      relayedMetric: "kestrel_gateway_artifact_reports_relayed_total",
      droppedMetric: "kestrel_gateway_artifact_reports_dropped_total",
      operation: "artifact_report",
    });
  }

  start(): void {
    this.loops = [this.poll.run(), this.reports.run()];
  }

  /** The device subscribed to its offer topic. */
  deviceReady(deviceId: string): void {
    this.poll.deviceReady(deviceId);
  }

  deviceGone(deviceId: string): void {
    this.poll.deviceGone(deviceId);
  }

  /** Resolves once the report is on disk; rejects (QueueFullError) when the queue is full. */
  report(deviceId: string, report: ArtifactStatusReport): Promise<void> {
    return this.reports.append({ deviceId, receivedAt: Date.now(), report });
  }

  async stop(): Promise<void> {
    this.stopping.abort();
    await Promise.all(this.loops);
    await this.options.reports.close();
  }

  private async deliver({ deviceId, offer }: OfferForDevice): Promise<void> {
    const { cache, logger, metrics } = this.options;
    const manifest = parseArtifactManifest(offer.manifest.text);
    // The device starts after a random delay: the cache fills meanwhile, once for all of them.
    if (manifest.ok) cache.prefetch(manifest.value.sha256);
    try {
      await this.options.publish(deviceId, offer);
      metrics.inc("kestrel_gateway_artifact_offers_published_total");
      logger.info({ deviceId, campaign: offer.campaign }, "artifact offer published");
    } catch (error) {
      // The cloud offers it again once its lease runs out.
      metrics.inc("kestrel_gateway_downlink_failures_total", { operation: "offer_publish" });
      logger.warn(
        { deviceId, campaign: offer.campaign, err: error instanceof Error ? error.message : String(error) },
        "artifact offer not published",
      );
    }
  }
}

function decodeReport(payload: Buffer): ReportFromDevice | undefined {
  try {
    const item = JSON.parse(payload.toString("utf8")) as ReportFromDevice;
    return typeof item.deviceId === "string" && typeof item.report === "object" ? item : undefined;
  } catch {
    return undefined;
  }
}
