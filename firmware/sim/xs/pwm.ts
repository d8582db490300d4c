// Simulated ECMA-419 `embedded:io/pwm` with the ESP32 port's defaults (1024 Hz, 10-bit resolution):
// every duty value written reaches the Node parent's GPIO model with the device time.

import host from "kestrel-sim:host";

const RESOLUTION = 10;

export default class PWM {
  readonly #pin: number;
  readonly #hz: number;
  #closed = false;

  constructor(options: { pin: number; hz?: number }) {
    const hz = options.hz ?? 1024;
    if (!Number.isInteger(hz) || hz <= 0) throw new RangeError("invalid hz");
    this.#pin = Number(options.pin);
    this.#hz = hz;
    host.call("gpio.open", { pin: this.#pin });
  }

  get resolution(): number {
    return RESOLUTION;
  }

  get hz(): number {
    return this.#hz;
  }

  get format(): "number" {
    return "number";
  }

  write(value: number): void {
    if (this.#closed) throw new Error("closed");
    if (!Number.isInteger(value) || value < 0 || value > (1 << RESOLUTION) - 1) throw new RangeError("invalid value");
    host.call("gpio.pwm", { pin: this.#pin, value, resolution: RESOLUTION, at: host.now });
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    host.call("gpio.close", { pin: this.#pin });
  }
}
