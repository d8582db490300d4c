// Tells the cloud, every few seconds, how far behind this gateway's uplink is (queue depth, bytes,
// oldest age) and how many devices are connected: the cloud's system alert rules on gateway queues
// evaluate these reports. Best effort: a report that fails is counted, and the next one follows.

import type { Logger } from "pino";
import type { GatewayMetrics } from "../metrics.ts";
import type { CloudClient, GatewayStatusReport } from "./cloud-client.ts";

export interface StatusReporterOptions {
  cloud: CloudClient;
  metrics: GatewayMetrics;
  logger: Logger;
  intervalMs: number;
  read: () => Promise<GatewayStatusReport>;
}

export class StatusReporter {
  private timer: NodeJS.Timeout | undefined;
  private sending: Promise<void> | undefined;

  constructor(private readonly options: StatusReporterOptions) {}

  start(): void {
    if (this.options.intervalMs === 0) return;
    this.timer = setInterval(() => {
      this.sending ??= this.report().finally(() => {
        this.sending = undefined;
      });
    }, this.options.intervalMs);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.sending;
  }

  async report(): Promise<void> {
    const { cloud, metrics, logger } = this.options;
    try {
      await cloud.reportStatus(await this.options.read());
      metrics.inc("kestrel_gateway_status_reports_total", { outcome: "ok" });
    } catch (error) {
      metrics.inc("kestrel_gateway_status_reports_total", { outcome: "failed" });
      logger.debug({ err: error instanceof Error ? error.message : String(error) }, "status report failed");
    }
  }
}
