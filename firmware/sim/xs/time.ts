// Simulated Moddable `time` module: ticks count virtual milliseconds since boot.

import host from "kestrel-sim:host";

// biome-ignore lint/complexity/noStaticOnlyClass: the SDK's Time is a class with static members, and the simulated one must be too.
export default class Time {
  static get ticks(): number {
    return host.ticks;
  }

  static delta(start: number, end: number = host.ticks): number {
    return end - start;
  }
}
