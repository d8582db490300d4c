// Moddable's `timer` module (modules/base/timer): callbacks run on the main loop; times in ms.

declare module "timer" {
  export type TimerCallback = (timer: Timer) => void;

  class Timer {
    private constructor();
    /** One-shot after interval ms (0: as soon as possible); repeats every repeat ms when repeat > 0. */
    static set: (callback: TimerCallback, interval?: number, repeat?: number) => Timer;
    static repeat: (callback: TimerCallback, interval: number) => Timer;
    /** Re-arms an existing timer; without interval it stays allocated but unscheduled. */
    static schedule: (timer: Timer, interval?: number, repeat?: number) => void;
    static clear: (timer: Timer | undefined | null) => void;
    /** Blocks the caller (and everything else) for milliseconds. */
    static delay: (milliseconds: number) => void;
    private brand: boolean;
  }

  export { Timer as default };
}
