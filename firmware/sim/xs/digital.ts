// Simulated ECMA-419 `embedded:io/digital`: every write reaches the Node parent's GPIO model, which
// records the pin levels with the device time of the write, as a logic analyser would. Inputs read
// the level the model drives; with `edge` and `onReadable`, the model's edges call back as interrupts.

import host from "kestrel-sim:host";

const CHANNEL = "gpio";

interface DigitalOptions {
  pin: number;
  mode: number;
  edge?: number;
  onReadable?: (this: Digital) => void;
}

export default class Digital {
  static readonly Input = 0;
  static readonly InputPullUp = 1;
  static readonly InputPullDown = 2;
  static readonly Output = 8;
  static readonly OutputOpenDrain = 9;
  static readonly Rising = 1;
  static readonly Falling = 2;
  readonly #pin: number;
  readonly #input: boolean;
  readonly #pull: "up" | "down" | undefined;
  #closed = false;

  constructor(options: DigitalOptions) {
    const { mode } = options;
    this.#input = mode === Digital.Input || mode === Digital.InputPullUp || mode === Digital.InputPullDown;
    if (!this.#input && mode !== Digital.Output) throw new RangeError("invalid mode");
    this.#pull = mode === Digital.InputPullUp ? "up" : mode === Digital.InputPullDown ? "down" : undefined;
    this.#pin = Number(options.pin);
    const edge = options.edge ?? 0;
    if (options.onReadable && (!this.#input || edge === 0)) throw new RangeError("onReadable needs an input with edge");
    host.call("gpio.open", { pin: this.#pin, input: this.#input, edge });
    const onReadable = options.onReadable;
    if (onReadable) host.listen(CHANNEL, this.#pin, () => onReadable.call(this));
  }

  write(value: 0 | 1): void {
    if (this.#closed) throw new Error("closed");
    if (this.#input) throw new Error("write to an input");
    host.call("gpio.write", { pin: this.#pin, value: value ? 1 : 0, at: host.now });
  }

  read(): 0 | 1 {
    if (this.#closed) throw new Error("closed");
    return host.call("gpio.read", { pin: this.#pin, pull: this.#pull }) === 1 ? 1 : 0;
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    host.unlisten(CHANNEL, this.#pin);
    host.call("gpio.close", { pin: this.#pin });
  }
}
