// Moddable's `time` module (modules/base/time): the subset the firmware uses.

declare module "time" {
  const Time: {
    /** Milliseconds since the device started; wraps like a 32-bit counter on hardware. */
    readonly ticks: number;
    /** end - start in milliseconds, safe across wrap-around; end defaults to now. */
    delta(start: number, end?: number): number;
  };

  export { Time as default };
}
