// Relays artifact offers and reports between the cloud and the devices connected here: long-polls
// the cloud for offers to devices subscribed to d/{id}/artifact, starts caching the artifact and
// publishes the offer (QoS 1); carries the devices' status reports back durably, like command acks.

import { type ArtifactOffer, type ArtifactStatusReport, parseArtifactManifest } from "@kestrel/wire/artifacts";
import { DownlinkRelay, type DownlinkRelayOptions, decodeAnswer } from "../downlink/downlink-relay.ts";
import type { ArtifactCache } from "./artifact-cache.ts";
import type { ArtifactChannel, OfferForDevice, ReportFromDevice } from "./artifact-channel.ts";

export interface ArtifactRelayOptions extends Omit<DownlinkRelayOptions, "answers"> {
  channel: ArtifactChannel;
  cache: ArtifactCache;
  /** Publishes the offer on the device's offer topic; resolves once the broker took it. */
  publish(deviceId: string, offer: ArtifactOffer): Promise<void>;
  /** Holds reports until the cloud took them; the relay closes it when it stops. */
  reports: DownlinkRelayOptions["answers"];
}

export class ArtifactRelay extends DownlinkRelay<OfferForDevice, ReportFromDevice> {
  constructor(private readonly options: ArtifactRelayOptions) {
    super(options.reports, options, {
      poll: {
        operation: "offer_poll",
        fetch: async (deviceIds, signal) => {
          const { offers, invalid } = await options.channel.pollOffers(deviceIds, this.waitSeconds, signal);
          if (invalid > 0)
            options.logger.warn({ invalid }, "artifact offers from the cloud failed validation and were skipped");
          return offers;
        },
      },
      answers: {
        send: (reports) => options.channel.sendReports(reports),
        decode: (payload) => decodeAnswer<ReportFromDevice>(payload, "report"),
        what: "artifact reports",
        relayedMetric: "kestrel_gateway_artifact_reports_relayed_total",
        droppedMetric: "kestrel_gateway_artifact_reports_dropped_total",
        operation: "artifact_report",
      },
    });
  }

  /** Resolves once the report is on disk; rejects (QueueFullError) when the queue is full. */
  report(deviceId: string, report: ArtifactStatusReport): Promise<void> {
    return this.answer({ deviceId, receivedAt: Date.now(), report });
  }

  protected async deliver({ deviceId, offer }: OfferForDevice): Promise<void> {
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
