// The simulated board's GPIO pins: records every level the firmware drives, with the virtual time,
// so tests can see a status LED blink.

import type { HostPort } from "./xs-machine.ts";

export interface PinLevel {
  pin: number;
  value: 0 | 1;
  /** Virtual epoch milliseconds. */
  at: number;
}

export class GpioModel implements HostPort {
  /** Every write, in order, across reboots. */
  readonly levels: PinLevel[] = [];
  readonly #now: () => number;
  readonly #open = new Set<number>();
  readonly #values = new Map<number, 0 | 1>();

  constructor(now: () => number) {
    this.#now = now;
  }

  handle(op: string, args: Record<string, unknown>): unknown {
    const pin = Number(args.pin);
    if (!Number.isInteger(pin) || pin < 0 || pin > 63) throw new RangeError(`invalid pin ${String(args.pin)}`);
    switch (op) {
      case "open":
        if (this.#open.has(pin)) throw new Error(`pin ${pin} in use`);
        this.#open.add(pin);
        return undefined;
      case "close":
        this.#open.delete(pin);
        return undefined;
      case "write": {
        this.#requireOpen(pin);
        const value = args.value === 1 ? 1 : 0;
        this.#values.set(pin, value);
        // The device's own time of the write; the host clock has moved on while the crank runs.
        const at = typeof args.at === "number" ? args.at : this.#now();
        this.levels.push({ pin, value, at });
        return undefined;
      }
      case "read":
        this.#requireOpen(pin);
        return this.#values.get(pin) ?? 0;
      default:
        throw new Error(`unknown gpio operation ${op}`);
    }
  }

  /** A reset releases every pin. */
  reset(): void {
    this.#open.clear();
  }

  #requireOpen(pin: number): void {
    if (!this.#open.has(pin)) throw new Error(`pin ${pin} is not open`);
  }
}
