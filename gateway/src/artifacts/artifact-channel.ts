// The gateway's side of the cloud's artifact API: the long poll for offers to connected devices,
// the route taking the devices' status reports, and the download of an artifact by SHA-256 (from a
// byte offset, so a cut download resumes).

import { type ArtifactOffer, type ArtifactStatusReport, validateArtifactOffer } from "@kestrel/wire/artifacts";
import { type CommandChannelOptions, isObject, postGatewayApi } from "../downlink/command-channel.ts";
import { CloudError } from "../uplink/cloud-client.ts";

export interface OfferForDevice {
  deviceId: string;
  offer: ArtifactOffer;
}

export interface ReportFromDevice {
  deviceId: string;
  receivedAt: number;
  report: ArtifactStatusReport;
}

export interface ArtifactDownload {
  /** Bytes of the whole artifact. */
  size: number;
  /** Where `body` starts: the offset asked for, or 0 when the cloud sent the whole artifact. */
  start: number;
  body: ReadableStream<Uint8Array>;
}

export class ArtifactChannel {
  constructor(private readonly options: CommandChannelOptions) {}

  async pollOffers(
    deviceIds: string[],
    waitSeconds: number,
    signal: AbortSignal,
  ): Promise<{ offers: OfferForDevice[]; invalid: number }> {
    const body = await postGatewayApi(
      this.options,
      "/api/gateway/v1/artifacts/offers/poll",
      { devices: deviceIds, wait: waitSeconds },
      AbortSignal.any([signal, AbortSignal.timeout(waitSeconds * 1000 + this.options.timeoutMs)]),
    );
    const items = isObject(body) && Array.isArray(body.offers) ? (body.offers as unknown[]) : undefined;
    if (!items) throw new CloudError("bad_response", "offer poll answer has no offers", true);
    const offers: OfferForDevice[] = [];
    let invalid = 0;
    for (const item of items) {
      const offer = isObject(item) ? validateArtifactOffer(item.offer) : undefined;
      if (isObject(item) && typeof item.deviceId === "string" && offer?.ok)
        offers.push({ deviceId: item.deviceId, offer: offer.value });
      else invalid++;
    }
    return { offers, invalid };
  }

  async sendReports(reports: ReportFromDevice[]): Promise<void> {
    await postGatewayApi(
      this.options,
      "/api/gateway/v1/artifact-reports",
      { reports },
      AbortSignal.timeout(this.options.timeoutMs),
    );
  }

  /** The artifact's bytes from `from` on; 404 (not retryable) when the organization has no such artifact. */
  async download(sha256: string, from: number, signal: AbortSignal): Promise<ArtifactDownload> {
    let response: Response;
    try {
      response = await fetch(`${this.options.baseUrl}/api/gateway/v1/artifacts/${sha256}`, {
        headers: {
          authorization: `Bearer ${this.options.gatewayKey}`,
          ...(from > 0 ? { range: `bytes=${from}-` } : {}),
        },
        signal,
      });
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      throw new CloudError("cloud_unreachable", `cannot reach the cloud at ${this.options.baseUrl}: ${message}`, true);
    }
    if (response.status === 200 || response.status === 206) {
      const range = /^bytes (\d+)-\d+\/(\d+)$/.exec(response.headers.get("content-range") ?? "");
      const size = range ? Number(range[2]) : Number(response.headers.get("content-length"));
      if (!response.body || !Number.isSafeInteger(size))
        throw new CloudError("bad_response", "artifact download without a body or size", true);
      return { size, start: response.status === 206 && range ? Number(range[1]) : 0, body: response.body };
    }
    await response.body?.cancel();
    const retryable = response.status >= 500 || response.status === 408 || response.status === 429;
    const code = response.status === 404 ? "artifact_not_found" : `http_${response.status}`;
    throw new CloudError(code, `cloud answered ${response.status} for artifact ${sha256}`, retryable, response.status);
  }
}
