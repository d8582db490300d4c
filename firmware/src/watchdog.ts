// Software watchdog: each subsystem (sampling, connectivity, plugins) proves it is alive by beating
// within its own deadline; one that misses it is reported once to onExpired, which reboots the
// device. The hardware watchdog underneath is fed by Moddable's event loop (see firmware/README.md).

import Time from "time";
import Timer from "timer";

/** Called with the subsystem that stopped beating and how long it has been silent (ms). */
export type WatchdogExpired = (subsystem: string, silentMs: number) => void;

/** Asked at every check: true counts as a beat (a subsystem that is idle on purpose, e.g. waiting to retry). */
export type AliveProbe = () => boolean;

export default class Watchdog {
  readonly #names: string[] = [];
  readonly #deadlines: number[] = [];
  readonly #lastBeat: number[] = [];
  readonly #probes: (AliveProbe | undefined)[] = [];
  readonly #onExpired: WatchdogExpired;
  readonly #timer: Timer;
  #expired = false;

  /** Checks the heartbeats every checkMs; keep it well below the shortest deadline. */
  constructor(onExpired: WatchdogExpired, checkMs: number) {
    this.#onExpired = onExpired;
    this.#timer = Timer.repeat(this.#check, checkMs);
  }

  /** Starts (or restarts) watching subsystem: it must beat at least every deadlineMs from now on. */
  watch(subsystem: string, deadlineMs: number, alive?: AliveProbe): void {
    let index = this.#names.indexOf(subsystem);
    if (index < 0) {
      index = this.#names.length;
      this.#names.push(subsystem);
    }
    this.#deadlines[index] = deadlineMs;
    this.#lastBeat[index] = Time.ticks;
    this.#probes[index] = alive;
  }

  /** Stops watching subsystem (it was stopped on purpose, e.g. sampling in safe mode). */
  unwatch(subsystem: string): void {
    const index = this.#names.indexOf(subsystem);
    if (index < 0) return;
    this.#names.splice(index, 1);
    this.#deadlines.splice(index, 1);
    this.#lastBeat.splice(index, 1);
    this.#probes.splice(index, 1);
  }

  beat(subsystem: string): void {
    const index = this.#names.indexOf(subsystem);
    if (index >= 0) this.#lastBeat[index] = Time.ticks;
  }

  watching(subsystem: string): boolean {
    return this.#names.includes(subsystem);
  }

  readonly #check = (): void => {
    if (this.#expired) return;
    const now = Time.ticks;
    for (let index = 0; index < this.#names.length; index++) {
      if (this.#probes[index]?.()) this.#lastBeat[index] = now;
      const silent = Time.delta(this.#lastBeat[index] as number, now);
      if (silent <= (this.#deadlines[index] as number)) continue;
      // Once: the reboot it triggers takes a moment (the log line and the reset mark are written first).
      this.#expired = true;
      Timer.clear(this.#timer);
      this.#onExpired(this.#names[index] as string, silent);
      return;
    }
  };
}
