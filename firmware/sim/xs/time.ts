// Simulated Moddable `time` module: ticks count virtual milliseconds since boot.

import host from "kestrel-sim:host";

const Time = {
  get ticks(): number {
    return host.ticks;
  },
  delta(start: number, end: number = host.ticks): number {
    return end - start;
  },
};

export default Time;
