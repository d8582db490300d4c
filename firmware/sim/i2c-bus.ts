// Simulated I2C: a bus wired to a pair of pins with register-level devices at 7-bit addresses, and
// the host side of the firmware's `embedded:io/i2c` (open, read, write, close on one address).
// Injected faults act here: a stuck bus times out, a disconnected device NACKs, reads get bit flips.

import { BusTimeoutError, busTarget, type FaultSet } from "./faults.ts";

/** A device on the bus; each call is one transaction (START, address, bytes, STOP). */
export interface I2cTarget {
  write(bytes: Uint8Array): void;
  read(length: number): Uint8Array;
  /** false while the device is unpowered: it does not acknowledge its address. */
  readonly present?: boolean;
}

export class I2cNackError extends Error {
  readonly address: number;

  constructor(address: number) {
    super(`no ACK from address 0x${address.toString(16).padStart(2, "0")}`);
    this.name = "I2cNackError";
    this.address = address;
  }
}

export class I2cBus {
  readonly sda: number;
  readonly scl: number;
  /** The bus's name in fault targets: "i2c" for the bus itself, "i2c:0x76" for a device on it. */
  readonly name: string;
  readonly #targets = new Map<number, I2cTarget>();
  readonly #faults: FaultSet | undefined;

  constructor(pins: { sda: number; scl: number }, faults?: FaultSet, name = "i2c") {
    this.sda = pins.sda;
    this.scl = pins.scl;
    this.#faults = faults;
    this.name = name;
  }

  attach(address: number, target: I2cTarget): void {
    if (!Number.isInteger(address) || address < 0 || address > 0x7f) throw new RangeError(`invalid address ${address}`);
    if (this.#targets.has(address)) throw new Error(`address 0x${address.toString(16)} already in use`);
    this.#targets.set(address, target);
  }

  detach(address: number): void {
    this.#targets.delete(address);
  }

  write(address: number, bytes: Uint8Array): void {
    this.#target(address).write(bytes);
  }

  read(address: number, length: number): Uint8Array {
    const bytes = Uint8Array.from(this.#target(address).read(length));
    if (bytes.length !== length)
      throw new Error(`device 0x${address.toString(16)} answered ${bytes.length} of ${length} bytes`);
    this.#faults?.corrupt(busTarget(this.name, address), bytes);
    return bytes;
  }

  #target(address: number): I2cTarget {
    const faults = this.#faults;
    if (faults?.has("stuck", this.name)) throw new BusTimeoutError(this.name);
    const target = this.#targets.get(address);
    if (!target || target.present === false || faults?.has("disconnect", busTarget(this.name, address)))
      throw new I2cNackError(address);
    return target;
  }
}

interface OpenDevice {
  bus: I2cBus;
  address: number;
}

function integerArg(args: Record<string, unknown>, key: string): number {
  const value = args[key];
  if (typeof value !== "number" || !Number.isInteger(value)) throw new TypeError(`${key} must be an integer`);
  return value;
}

/** The host calls behind the simulated `embedded:io/i2c` class, with the ESP32 port's error texts. */
export class I2cPort {
  readonly #buses: readonly I2cBus[];
  readonly #open = new Map<number, OpenDevice>();
  #nextHandle = 1;

  constructor(buses: readonly I2cBus[]) {
    this.#buses = buses;
  }

  handle(op: string, args: Record<string, unknown>): unknown {
    switch (op) {
      case "open":
        return this.#openDevice(args);
      case "read": {
        const device = this.#device(args);
        const length = integerArg(args, "length");
        try {
          return Array.from(device.bus.read(device.address, length));
        } catch (error) {
          throw new Error(`read failed: ${(error as Error).message}`);
        }
      }
      case "write": {
        const device = this.#device(args);
        const bytes = args.bytes;
        if (!Array.isArray(bytes)) throw new TypeError("bytes must be an array");
        try {
          device.bus.write(device.address, Uint8Array.from(bytes as number[]));
        } catch (error) {
          throw new Error(`write failed: ${(error as Error).message}`);
        }
        return undefined;
      }
      case "close":
        this.#open.delete(integerArg(args, "handle"));
        return undefined;
      default:
        throw new Error(`unknown i2c operation ${op}`);
    }
  }

  /** A chip reset releases every handle; the devices on the bus keep their power and registers. */
  reset(): void {
    this.#open.clear();
  }

  #openDevice(args: Record<string, unknown>): number {
    const data = integerArg(args, "data");
    const clock = integerArg(args, "clock");
    const address = integerArg(args, "address");
    const bus = this.#buses.find((candidate) => candidate.sda === data && candidate.scl === clock);
    if (!bus) throw new RangeError(`unusable pins: no simulated I2C bus on data ${data}, clock ${clock}`);
    for (const device of this.#open.values())
      if (device.bus === bus && device.address === address) throw new RangeError("duplicate address");
    const handle = this.#nextHandle++;
    this.#open.set(handle, { bus, address });
    return handle;
  }

  #device(args: Record<string, unknown>): OpenDevice {
    const device = this.#open.get(integerArg(args, "handle"));
    if (!device) throw new Error("closed");
    return device;
  }
}
