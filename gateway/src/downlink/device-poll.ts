// A long poll to the cloud for work addressed to the devices connected here (commands, artifact
// offers): it names the devices listening now, delivers what comes back, and asks again. A device
// that starts listening while a poll is in flight restarts it (debounced), so the cloud sees it.

import { backoffDelay, type RetryLoopOptions, sleep } from "./backoff.ts";

export interface DevicePollOptions<T> extends RetryLoopOptions {
  /** One long poll for these devices; resolves with what the cloud handed out. */
  fetch(deviceIds: string[], signal: AbortSignal): Promise<T[]>;
  /** Hands one item to its device; failures are the deliverer's to log (the cloud offers it again). */
  deliver(item: T): Promise<void>;
  /** Names the poll in logs and in kestrel_gateway_downlink_failures_total{operation}. */
  operation: string;
}

/** Devices connecting in a burst restart the long poll once, not once each. */
const RESTART_DEBOUNCE_MS = 50;

export class DevicePoll<T> {
  private readonly devices = new Set<string>();
  private round: AbortController | undefined;
  private restartTimer: NodeJS.Timeout | undefined;
  private wake: (() => void) | undefined;

  constructor(private readonly options: DevicePollOptions<T>) {
    options.stopping.addEventListener("abort", () => {
      clearTimeout(this.restartTimer);
      this.round?.abort();
      this.wake?.();
    });
  }

  /** The device listens now, so what is published for it reaches it. */
  deviceReady(deviceId: string): void {
    if (this.devices.has(deviceId)) return;
    this.devices.add(deviceId);
    // An idle loop's next poll names this device already; aborting it would waste what it claims.
    if (this.wake) {
      this.wake();
      return;
    }
    // The poll in flight asks for the old set of devices; ask again with this one in it.
    this.restartTimer ??= setTimeout(() => {
      this.restartTimer = undefined;
      this.round?.abort();
    }, RESTART_DEBOUNCE_MS);
  }

  /** False when the device was not listening. */
  deviceGone(deviceId: string): boolean {
    return this.devices.delete(deviceId);
  }

  /** Whether the device listens now. */
  has(deviceId: string): boolean {
    return this.devices.has(deviceId);
  }

  async run(): Promise<void> {
    const { logger, metrics, stopping, operation } = this.options;
    let failures = 0;
    while (!stopping.aborted) {
      if (this.devices.size === 0) {
        await new Promise<void>((resolve) => {
          this.wake = resolve;
        });
        this.wake = undefined;
        continue;
      }
      const round = new AbortController();
      this.round = round;
      try {
        const items = await this.options.fetch([...this.devices], round.signal);
        failures = 0;
        for (const item of items) await this.options.deliver(item);
      } catch (error) {
        // Aborted on purpose: the device set changed, or the gateway is stopping.
        if (round.signal.aborted) continue;
        failures++;
        metrics.inc("kestrel_gateway_downlink_failures_total", { operation });
        logger.warn({ err: error instanceof Error ? error.message : String(error), failures }, `${operation} failed`);
        await sleep(backoffDelay(failures, this.options.retryMinMs, this.options.retryMaxMs), stopping);
      }
    }
  }
}
