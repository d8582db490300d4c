// Keeps log records (info and above) in a ring in their own flash partition, so the lines logged
// just before a crash or a watchdog reset survive it, and hands them out as LogBatch payloads for
// `d/{id}/log` at the pace a token bucket allows. Records lost to the ring's rotation (it was full)
// are counted and reported in the next batch's `dropped`.

import FlashRing from "kestrel/flash-ring";
import Time from "time";

export interface LogShippingRate {
  /** Records a second sent on average. */
  perSecond: number;
  /** Records sent at once after a quiet spell. */
  burst: number;
  /** Records in one LogBatch at most; it must fit the socket's send buffer. */
  perBatch: number;
}

/** Lines longer than this stay on the console only: ten of them still fit an 8 KB send buffer. */
const LINE_MAX = 700;

export default class LogShipper {
  readonly #ring: FlashRing;
  readonly #rate: LogShippingRate;
  #tokens: number;
  #refilledAt = Time.ticks;
  /** Records taken from the ring for the batch being sent; sent again if the publish fails. */
  readonly #pending: string[] = [];
  /** Records that could not be kept (too long, or a flash write failed). */
  #lost = 0;
  /** dropped as reported by the batches sent so far, and by the batch being sent. */
  #reported = 0;
  #reporting = 0;

  constructor(partition: string, rate: LogShippingRate) {
    this.#ring = new FlashRing(partition);
    this.#rate = rate;
    this.#tokens = rate.burst;
  }

  /** Records waiting to be sent. */
  get queued(): number {
    return this.#ring.size + this.#pending.length;
  }

  /** Records lost since boot: the ring rotated over them, or they could not be written. */
  get dropped(): number {
    return this.#ring.dropped + this.#lost;
  }

  /** The log sink: keeps one record in flash. Never logs (it runs inside log()). */
  readonly append = (line: string): void => {
    if (line.length > LINE_MAX) {
      this.#lost++;
      return;
    }
    try {
      this.#ring.push(line, 1);
    } catch {
      this.#lost++;
    }
  };

  /** The next LogBatch to publish, or undefined when nothing waits or the rate allows none yet. */
  next(): string | undefined {
    this.#refill();
    const room = Math.min(Math.floor(this.#tokens), this.#rate.perBatch);
    while (this.#pending.length < room) {
      const line = this.#ring.peek();
      if (line === undefined) break;
      this.#pending.push(line);
      this.#ring.shift();
    }
    if (this.#pending.length === 0) return undefined;
    const dropped = this.dropped - this.#reported;
    this.#reporting = dropped;
    return `{"v":1,${dropped > 0 ? `"dropped":${dropped},` : ""}"records":[${this.#pending.join(",")}]}`;
  }

  /** The batch next() returned was published; returns how many dropped records it reported. */
  sent(): number {
    this.#tokens -= this.#pending.length;
    this.#pending.length = 0;
    this.#reported += this.#reporting;
    const reported = this.#reporting;
    this.#reporting = 0;
    return reported;
  }

  #refill(): void {
    const now = Time.ticks;
    const elapsed = Time.delta(this.#refilledAt, now);
    this.#refilledAt = now;
    this.#tokens = Math.min(this.#rate.burst, this.#tokens + (elapsed * this.#rate.perSecond) / 1000);
  }
}
