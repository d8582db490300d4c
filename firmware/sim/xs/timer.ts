// Simulated Moddable `timer` module: the timer queue lives in the simulator runtime, on virtual time.

import host, { type SimTimer } from "kestrel-sim:host";

type TimerCallback = (timer: SimTimer) => void;

// biome-ignore lint/complexity/noStaticOnlyClass: the SDK's Timer is a class with static members, and the simulated one must be too.
export default class Timer {
  static set(callback: TimerCallback, interval = 0, repeat = 0): SimTimer {
    return host.timerSet(callback, interval, repeat);
  }

  static repeat(callback: TimerCallback, interval: number): SimTimer {
    return host.timerSet(callback, interval, interval);
  }

  static schedule(timer: SimTimer, interval?: number, repeat?: number): void {
    host.timerSchedule(timer, interval, repeat);
  }

  static clear(timer: SimTimer | undefined | null): void {
    host.timerClear(timer);
  }

  static delay(milliseconds: number): void {
    host.delay(milliseconds);
  }
}
