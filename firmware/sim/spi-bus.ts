// Simulated SPI: a bus on (in, out, clock) pins with devices on chip-select pins, and the host side of
// the firmware's `embedded:io/spi`. A transaction lasts from the first byte after select until
// flush(true) releases select, as on the ESP32 port. An absent or disconnected device leaves MISO
// pulled up (0xFF); a "corrupt" fault flips a bit in what the device sends.

import { busTarget, type FaultSet } from "./faults.ts";

/** A device on the bus, full duplex: every byte out clocks one byte in. */
export interface SpiTarget {
  /** Bytes clocked out (MOSI) while selected; returns the bytes clocked in (MISO). */
  exchange(bytes: Uint8Array): Uint8Array;
  /** Select released: the transaction ends. */
  deselect(): void;
  readonly present?: boolean;
}

const PULLED_UP = 0xff;

export class SpiBus {
  readonly pins: { in: number; out: number; clock: number };
  /** The bus's name in fault targets: "spi:0x05" names the device on select pin 5. */
  readonly name: string;
  readonly #targets = new Map<number, SpiTarget>();
  readonly #faults: FaultSet | undefined;

  constructor(pins: { in: number; out: number; clock: number }, faults?: FaultSet, name = "spi") {
    this.pins = pins;
    this.#faults = faults;
    this.name = name;
  }

  attach(select: number, target: SpiTarget): void {
    if (this.#targets.has(select)) throw new Error(`select pin ${select} already in use`);
    this.#targets.set(select, target);
  }

  exchange(select: number, bytes: Uint8Array): Uint8Array {
    const target = this.#live(select);
    if (!target) return new Uint8Array(bytes.length).fill(PULLED_UP);
    const received = Uint8Array.from(target.exchange(bytes));
    if (received.length !== bytes.length) throw new Error(`device on select ${select} clocked a wrong byte count`);
    this.#faults?.corrupt(busTarget(this.name, select), received);
    return received;
  }

  deselect(select: number): void {
    this.#live(select)?.deselect();
  }

  #live(select: number): SpiTarget | undefined {
    const target = this.#targets.get(select);
    if (!target || target.present === false || this.#faults?.has("disconnect", busTarget(this.name, select)))
      return undefined;
    return target;
  }
}

function integerArg(args: Record<string, unknown>, key: string): number {
  const value = args[key];
  if (typeof value !== "number" || !Number.isInteger(value)) throw new TypeError(`${key} must be an integer`);
  return value;
}

interface OpenDevice {
  bus: SpiBus;
  select: number;
}

/** The host calls behind the simulated `embedded:io/spi` class. */
export class SpiPort {
  readonly #buses: readonly SpiBus[];
  readonly #open = new Map<number, OpenDevice>();
  #nextHandle = 1;

  constructor(buses: readonly SpiBus[]) {
    this.#buses = buses;
  }

  handle(op: string, args: Record<string, unknown>): unknown {
    switch (op) {
      case "open":
        return this.#openDevice(args);
      case "exchange": {
        const device = this.#device(args);
        const bytes = args.bytes;
        if (!Array.isArray(bytes)) throw new TypeError("bytes must be an array");
        return Array.from(device.bus.exchange(device.select, Uint8Array.from(bytes as number[])));
      }
      case "deselect": {
        const device = this.#device(args);
        device.bus.deselect(device.select);
        return undefined;
      }
      case "close":
        this.#open.delete(integerArg(args, "handle"));
        return undefined;
      default:
        throw new Error(`unknown spi operation ${op}`);
    }
  }

  /** A chip reset releases every handle. */
  reset(): void {
    this.#open.clear();
  }

  #openDevice(args: Record<string, unknown>): number {
    const pins = { in: integerArg(args, "in"), out: integerArg(args, "out"), clock: integerArg(args, "clock") };
    const select = integerArg(args, "select");
    const bus = this.#buses.find(
      (candidate) =>
        candidate.pins.in === pins.in && candidate.pins.out === pins.out && candidate.pins.clock === pins.clock,
    );
    if (!bus)
      throw new RangeError(
        `unusable pins: no simulated SPI bus on in ${pins.in}, out ${pins.out}, clock ${pins.clock}`,
      );
    for (const device of this.#open.values())
      if (device.bus === bus && device.select === select) throw new RangeError("select pin in use");
    const handle = this.#nextHandle++;
    this.#open.set(handle, { bus, select });
    return handle;
  }

  #device(args: Record<string, unknown>): OpenDevice {
    const device = this.#open.get(integerArg(args, "handle"));
    if (!device) throw new Error("closed");
    return device;
  }
}
