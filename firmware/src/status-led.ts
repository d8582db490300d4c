// The board's status LED on one GPIO (embedded:io/digital): blinks on request so a person can find
// the device (the identify command), and is released when it is done.

import Digital from "embedded:io/digital";
import Timer from "timer";

const TOGGLE_MS = 250;

export default class StatusLed {
  readonly #pin: number;
  #led: Digital | undefined;
  #timer: Timer | undefined;
  #togglesLeft = 0;

  constructor(pin: number) {
    this.#pin = pin;
  }

  /** Blinks for seconds, ending off; a new request restarts the count rather than stacking a second blink. */
  blink(seconds: number): void {
    if (!this.#led) {
      this.#led = new Digital({ pin: this.#pin, mode: Digital.Output });
      this.#timer = Timer.repeat(this.#onTimer, TOGGLE_MS);
    }
    this.#togglesLeft = Math.round((seconds * 1000) / TOGGLE_MS);
    this.#led.write(1);
  }

  readonly #onTimer = (): void => {
    const led = this.#led;
    if (!led) return;
    if (--this.#togglesLeft > 0) {
      led.write(this.#togglesLeft % 2 === 0 ? 1 : 0);
      return;
    }
    led.write(0);
    led.close();
    this.#led = undefined;
    Timer.clear(this.#timer);
    this.#timer = undefined;
  };
}
