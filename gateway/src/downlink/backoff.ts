// Retry pacing for the gateway's cloud loops: exponential backoff with full jitter, cut short when
// the gateway stops.

import type { Logger } from "pino";
import type { GatewayMetrics } from "../metrics.ts";

export function backoffDelay(failures: number, minMs: number, maxMs: number): number {
  const ceiling = Math.min(maxMs, minMs * 2 ** Math.min(failures - 1, 16));
  return minMs / 2 + Math.random() * (ceiling - minMs / 2);
}

/** Resolves after ms, or at once when the signal aborts. */
export function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    signal.addEventListener("abort", done, { once: true });
    function done(): void {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    }
  });
}

/** What every retrying loop of the gateway's downlink takes. */
export interface RetryLoopOptions {
  logger: Logger;
  metrics: GatewayMetrics;
  retryMinMs: number;
  retryMaxMs: number;
  stopping: AbortSignal;
}
