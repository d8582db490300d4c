// The simulated board's GPIO pins: records every level the firmware drives, with the virtual time,
// so tests can see a status LED blink; drives input pins from outside (a button, with contact
// bounce) and reports the edges the firmware asked for; records PWM duty values.

import type { HostPort } from "./xs-machine.ts";

export interface PinLevel {
  pin: number;
  value: 0 | 1;
  /** Virtual epoch milliseconds. */
  at: number;
}

/** ECMA-419 edge flags, as Moddable numbers them. */
export const EDGE_RISING = 1;
export const EDGE_FALLING = 2;

export interface PwmLevel {
  pin: number;
  /** The value written, 0..2^resolution - 1. */
  value: number;
  resolution: number;
  at: number;
}

export class GpioModel implements HostPort {
  /** Every write, in order, across reboots. */
  readonly levels: PinLevel[] = [];
  /** Every PWM write, in order. */
  readonly pwm: PwmLevel[] = [];
  /** Delivers an edge to the firmware (the device wires it to the running machine). */
  onEdge: ((pin: number) => void) | undefined;
  readonly #now: () => number;
  readonly #open = new Set<number>();
  readonly #values = new Map<number, 0 | 1>();
  /** Input pins the firmware opened, with the edges it wants to hear about. */
  readonly #inputs = new Map<number, number>();
  readonly #external = new Map<number, 0 | 1>();

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
        if (args.input === true) this.#inputs.set(pin, Number(args.edge) || 0);
        return undefined;
      case "close":
        this.#open.delete(pin);
        this.#inputs.delete(pin);
        return undefined;
      case "pwm": {
        this.#requireOpen(pin);
        const at = typeof args.at === "number" ? args.at : this.#now();
        this.pwm.push({ pin, value: Number(args.value), resolution: Number(args.resolution), at });
        return undefined;
      }
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
        if (this.#inputs.has(pin)) return this.#external.get(pin) ?? (args.pull === "down" ? 0 : 1);
        return this.#values.get(pin) ?? 0;
      default:
        throw new Error(`unknown gpio operation ${op}`);
    }
  }

  /** A reset releases every pin. */
  reset(): void {
    this.#open.clear();
    this.#inputs.clear();
  }

  /** Drives an input pin from outside; an edge the firmware listens for reaches it. */
  drive(pin: number, level: 0 | 1): void {
    const previous = this.#external.get(pin) ?? 1;
    this.#external.set(pin, level);
    const edges = this.#inputs.get(pin);
    if (edges === undefined || previous === level) return;
    if (edges & (level === 1 ? EDGE_RISING : EDGE_FALLING)) this.onEdge?.(pin);
  }

  /** A mechanical contact settling at level: it chatters `bounces` times first, all within microseconds. */
  bounce(pin: number, level: 0 | 1, bounces = 5): void {
    for (let i = 0; i < bounces; i++) {
      this.drive(pin, level);
      this.drive(pin, level === 1 ? 0 : 1);
    }
    this.drive(pin, level);
  }

  #requireOpen(pin: number): void {
    if (!this.#open.has(pin)) throw new Error(`pin ${pin} is not open`);
  }
}
