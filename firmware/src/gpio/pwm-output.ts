// A PWM output (LED dimming, a fan, a buzzer) on ECMA-419 `embedded:io/pwm`: duty as a fraction 0..1,
// scaled to the port's resolution (10 bits at 1024 Hz by default on the ESP32's LEDC).

import PWM from "embedded:io/pwm";

export default class PwmOutput {
  #pwm: PWM | undefined;
  #duty = 0;

  constructor(options: { pin: number; hz?: number }) {
    this.#pwm =
      options.hz === undefined ? new PWM({ pin: options.pin }) : new PWM({ pin: options.pin, hz: options.hz });
    this.duty = 0;
  }

  get duty(): number {
    return this.#duty;
  }

  /** Fraction of each period the output is high, 0..1; rounded to the nearest step the port has. */
  set duty(fraction: number) {
    const pwm = this.#pwm;
    if (!pwm) throw new Error("pwm: closed");
    if (!(fraction >= 0 && fraction <= 1)) throw new RangeError(`pwm: duty ${fraction} outside 0..1`);
    const max = (1 << pwm.resolution) - 1;
    pwm.write(Math.round(fraction * max));
    this.#duty = fraction;
  }

  close(): void {
    const pwm = this.#pwm;
    this.#pwm = undefined;
    // The SDK's typings leave close() out although the ESP32 runtime has it.
    (pwm as { close?: () => void } | undefined)?.close?.();
  }
}
