// Simulated Moddable `timer` module: the timer queue lives in the simulator runtime, on virtual time.

import host, { type SimTimer } from "kestrel-sim:host";

type TimerCallback = (timer: SimTimer) => void;

const Timer = {
  set(callback: TimerCallback, interval = 0, repeat = 0): SimTimer {
    return host.timerSet(callback, interval, repeat);
  },
  repeat(callback: TimerCallback, interval: number): SimTimer {
    return host.timerSet(callback, interval, interval);
  },
  schedule(timer: SimTimer, interval?: number, repeat?: number): void {
    host.timerSchedule(timer, interval, repeat);
  },
  clear(timer: SimTimer | undefined | null): void {
    host.timerClear(timer);
  },
  delay(milliseconds: number): void {
    host.delay(milliseconds);
  },
};

export default Timer;
