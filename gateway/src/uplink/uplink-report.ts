// Tells the cloud, every few seconds, how far this gateway's uplink has come: how many items wait in
// the queue and when the oldest of them arrived (none: everything received is in the cloud). The
// cloud's scheduled exports wait until every gateway of the organization is past a range's end
// before they read it, so samples still queued here are not left out of an export.

import { randomBytes } from "node:crypto";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { Logger } from "pino";
import type { GatewayMetrics } from "../metrics.ts";
import type { CloudClient } from "./cloud-client.ts";
import type { UplinkForwarder } from "./forwarder.ts";

export interface UplinkReporterOptions {
  cloud: Pick<CloudClient, "reportUplink">;
  forwarder: Pick<UplinkForwarder, "depth" | "oldestAgeMs">;
  gatewayId: string;
  intervalMs: number;
  logger: Logger;
  metrics: GatewayMetrics;
}

const ID_FILE = "gateway-id";

/** GATEWAY_ID, or an id made once and kept in the data directory, so a restart reports as the same gateway. */
export async function gatewayIdOf(dataDir: string, configured: string | undefined): Promise<string> {
  if (configured) return configured;
  const path = join(dataDir, ID_FILE);
  try {
    return (await readFile(path, "utf8")).trim();
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
  }
  await mkdir(dataDir, { recursive: true });
  const id = randomBytes(12).toString("base64url");
  await writeFile(path, id, { flag: "wx" }).catch(async (error: NodeJS.ErrnoException) => {
    if (error.code !== "EEXIST") throw error;
  });
  return (await readFile(path, "utf8")).trim();
}

export class UplinkReporter {
  private timer: NodeJS.Timeout | undefined;
  private reporting: Promise<void> | undefined;

  constructor(private readonly options: UplinkReporterOptions) {}

  start(): void {
    const tick = () => {
      this.reporting ??= this.reportOnce().finally(() => {
        this.reporting = undefined;
      });
    };
    tick();
    this.timer = setInterval(tick, this.options.intervalMs);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.reporting;
  }

  /** One report; a failure is logged and counted, the next one comes at the next interval. */
  async reportOnce(): Promise<void> {
    const { cloud, forwarder, gatewayId, logger, metrics } = this.options;
    const at = Date.now();
    const age = await forwarder.oldestAgeMs(at);
    const pending = forwarder.depth;
    try {
      await cloud.reportUplink(gatewayId, { pending, oldestAt: pending > 0 ? at - age : null, at });
    } catch (error) {
      metrics.inc("kestrel_gateway_uplink_reports_failed_total");
      logger.debug({ err: error instanceof Error ? error.message : String(error) }, "uplink report failed");
    }
  }
}
