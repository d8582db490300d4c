// Simulated ECMA-419 `embedded:io/digital` (output side): every write reaches the Node parent's
// GPIO model, which records the pin levels with the device time of the write, as a logic analyser would.

import host from "kestrel-sim:host";

export default class Digital {
  static readonly Input = 0;
  static readonly Output = 8;
  readonly #pin: number;
  #closed = false;

  constructor(options: { pin: number; mode: number }) {
    if (options.mode !== Digital.Output) throw new Error("only output mode is simulated");
    this.#pin = Number(options.pin);
    host.call("gpio.open", { pin: this.#pin });
  }

  write(value: 0 | 1): void {
    if (this.#closed) throw new Error("closed");
    host.call("gpio.write", { pin: this.#pin, value: value ? 1 : 0, at: host.now });
  }

  read(): 0 | 1 {
    if (this.#closed) throw new Error("closed");
    return host.call("gpio.read", { pin: this.#pin }) === 1 ? 1 : 0;
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    host.call("gpio.close", { pin: this.#pin });
  }
}
