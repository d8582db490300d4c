// ECMA-419 PWM as Moddable implements it (modules/io/pwm): the subset the firmware uses, kept a
// strict subset of the SDK's typings/embedded_io/pwm.d.ts (which has no close(), though the runtime does).

declare module "embedded:io/pwm" {
  // biome-ignore lint/complexity/noUselessEmptyExport: without it every declaration in the block is importable; the SDK exports only the class.
  export {};

  class PWM {
    constructor(options: { pin: number; hz?: number });
    /** Bits of the duty value: write() takes 0..2^resolution - 1. */
    readonly resolution: number;
    readonly hz: number;
    write(value: number): void;
  }

  export default PWM;
}
