// A digital input (button, reed switch, door contact) with debounce: ECMA-419 `embedded:io/digital`
// interrupts on both edges restart one timer, and only a level that stays put for debounceMs counts.
// Callbacks run on the main loop, once per settled change; nothing is allocated per edge.

import Digital from "embedded:io/digital";
import Timer from "timer";

export interface DebouncedInputOptions {
  pin: number;
  /** Pull-up (a contact to GND, the default), pull-down (a contact to 3V3) or none (driven externally). */
  pull?: "up" | "down" | "none";
  /** How long a level must hold before it counts; 20 ms covers typical push buttons. */
  debounceMs?: number;
  /** Every settled change, with the new level. */
  onChange?: (level: 0 | 1) => void;
  onRising?: () => void;
  onFalling?: () => void;
}

const DEFAULT_DEBOUNCE_MS = 20;

export default class DebouncedInput {
  readonly debounceMs: number;
  #digital: Digital | undefined;
  #timer: Timer | undefined;
  #level: 0 | 1;
  readonly #options: DebouncedInputOptions;

  constructor(options: DebouncedInputOptions) {
    const debounceMs = options.debounceMs ?? DEFAULT_DEBOUNCE_MS;
    if (!Number.isInteger(debounceMs) || debounceMs < 1) throw new RangeError(`invalid debounceMs ${debounceMs}`);
    this.debounceMs = debounceMs;
    this.#options = options;
    const pull = options.pull ?? "up";
    const mode = pull === "up" ? Digital.InputPullUp : pull === "down" ? Digital.InputPullDown : Digital.Input;
    const onEdge = this.#onEdge;
    this.#digital = new Digital({
      pin: options.pin,
      mode,
      edge: Digital.Rising | Digital.Falling,
      onReadable() {
        onEdge();
      },
    });
    this.#level = this.#digital.read();
  }

  /** The last settled level. */
  get level(): 0 | 1 {
    return this.#level;
  }

  close(): void {
    Timer.clear(this.#timer);
    this.#timer = undefined;
    this.#digital?.close();
    this.#digital = undefined;
  }

  readonly #onEdge = (): void => {
    // Each edge pushes the decision back: the contact is still moving.
    if (this.#timer) Timer.schedule(this.#timer, this.debounceMs);
    else this.#timer = Timer.set(this.#onSettled, this.debounceMs);
  };

  readonly #onSettled = (): void => {
    const digital = this.#digital;
    if (!digital) return;
    const level = digital.read();
    if (level === this.#level) return;
    this.#level = level;
    const options = this.#options;
    options.onChange?.(level);
    if (level === 1) options.onRising?.();
    else options.onFalling?.();
  };
}
