// The contract between the simulator runtime (boot.ts) and the simulated Moddable modules that run
// inside the firmware's compartment: they reach the Node parent and the virtual clock only through it.

declare module "kestrel-sim:host" {
  /** An opaque timer handle, what Moddable's Timer functions return and accept. */
  export interface SimTimer {
    readonly brand: "SimTimer";
  }

  export type SimEventListener = (data: Record<string, unknown>) => void;

  export interface SimHost {
    /** Synchronous call into the Node parent; throws the parent's error message. */
    call(op: string, args?: Record<string, unknown>): unknown;
    /** Virtual wall clock, epoch milliseconds. */
    readonly now: number;
    /** Virtual milliseconds since the device booted. */
    readonly ticks: number;
    timerSet(callback: (timer: SimTimer) => void, interval: number, repeat: number): SimTimer;
    timerSchedule(timer: SimTimer, interval?: number, repeat?: number): void;
    timerClear(timer: SimTimer | undefined | null): void;
    /** Blocks the device for ms of virtual time. */
    delay(ms: number): void;
    /** Routes parent events for (channel, id) to listener until unlisten. */
    listen(channel: string, id: number, listener: SimEventListener): void;
    unlisten(channel: string, id: number): void;
    /** A simulator diagnostic (not firmware output), logged by the parent. */
    report(level: "warn" | "error", msg: string, error?: unknown): void;
  }

  const host: SimHost;
  export default host;
}
