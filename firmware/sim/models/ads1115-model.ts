// Register-level model of a TI ADS1115 on the simulated I2C bus: pointer register, config with the
// datasheet's reset value (0x8583), PGA ranges, data rates timing each conversion, single-shot (OS bit
// reads 0 while converting) and continuous mode. Inputs are voltages set by the test or a seeded drift.

import { seededRandom } from "../faults.ts";
import type { I2cTarget } from "../i2c-bus.ts";

export const ADS1115_CONFIG_RESET = 0x8583;
export const ADS1115_LO_THRESH_RESET = 0x8000;
export const ADS1115_HI_THRESH_RESET = 0x7fff;

const FULL_SCALE = [6.144, 4.096, 2.048, 1.024, 0.512, 0.256, 0.256, 0.256] as const;
const RATES = [8, 16, 32, 64, 128, 250, 475, 860] as const;

/** One conversion: the differential voltage at the multiplexer and the 16-bit result. */
export interface Ads1115Conversion {
  volts: number;
  range: number;
  raw: number;
}

export interface Ads1115ModelOptions {
  seed?: number;
  now?: () => number;
}

/** Result code for volts at a full-scale range, saturating at the 16-bit limits. */
export function ads1115Code(volts: number, range: number): number {
  return Math.max(-32768, Math.min(32767, Math.round((volts * 32768) / range)));
}

export class Ads1115Model implements I2cTarget {
  readonly served: Ads1115Conversion[] = [];
  readonly #now: () => number;
  readonly #inputs: (number | undefined)[] = [undefined, undefined, undefined, undefined];
  readonly #drift: number[];
  readonly #registers = new Uint16Array(4);
  #pointer = 0;
  #powered = true;
  #hold = false;
  /** When the conversion in progress completes (single-shot), epoch ms. */
  #busyUntil: number | undefined;
  /** Continuous mode: when the mode started, to know how many conversions have completed. */
  #continuousSince: number | undefined;
  #latched = -1;

  constructor(options: Ads1115ModelOptions = {}) {
    this.#now = options.now ?? Date.now;
    const random = seededRandom(options.seed ?? 1);
    this.#drift = [0, 1, 2, 3].map(() => 0.5 + 2.5 * random());
    this.#reset();
  }

  get present(): boolean {
    return this.#powered;
  }

  setPowered(on: boolean): void {
    if (on && !this.#powered) this.#reset();
    this.#powered = on;
  }

  /** Fixes the voltage on an input (0..3); undefined returns it to the seeded drift. */
  setInput(channel: number, volts: number | undefined): void {
    this.#inputs[channel] = volts;
  }

  /** Conversions never complete (a hung converter, for timeout tests). */
  holdConversion(on: boolean): void {
    this.#hold = on;
  }

  input(channel: number): number {
    return this.#inputs[channel] ?? (this.#drift[channel] as number);
  }

  write(bytes: Uint8Array): void {
    if (bytes.length === 0) return;
    this.#pointer = (bytes[0] as number) & 0b11;
    if (bytes.length < 3) return;
    const value = ((bytes[1] as number) << 8) | (bytes[2] as number);
    if (this.#pointer === 0) return; // the conversion register is read-only
    if (this.#pointer !== 1) {
      this.#registers[this.#pointer] = value;
      return;
    }
    const single = (value & 0x0100) !== 0;
    const wasBusy = this.#busy();
    // OS and the reserved read state are not stored: OS reads back the conversion status.
    this.#registers[1] = value & 0x7fff;
    if (single) {
      this.#continuousSince = undefined;
      if (value & 0x8000 && !wasBusy) this.#busyUntil = this.#now() + 1000 / this.#rate();
    } else {
      this.#busyUntil = undefined;
      this.#continuousSince = this.#now();
      this.#latched = -1;
    }
  }

  read(length: number): Uint8Array {
    this.#update();
    let value = this.#registers[this.#pointer] as number;
    if (this.#pointer === 1) value |= this.#busy() ? 0 : 0x8000;
    const out = new Uint8Array(length);
    for (let i = 0; i < length; i++) out[i] = i === 0 ? value >> 8 : i === 1 ? value & 0xff : 0xff;
    return out;
  }

  #rate(): number {
    return RATES[((this.#registers[1] as number) >> 5) & 0b111] as number;
  }

  #busy(): boolean {
    this.#update();
    return this.#busyUntil !== undefined;
  }

  /** Completes conversions whose time has come. */
  #update(): void {
    if (this.#hold) return;
    const now = this.#now();
    if (this.#busyUntil !== undefined && now >= this.#busyUntil) {
      this.#busyUntil = undefined;
      this.#convert();
    }
    if (this.#continuousSince !== undefined) {
      const completed = Math.floor(((now - this.#continuousSince) * this.#rate()) / 1000);
      if (completed >= 1 && completed !== this.#latched) {
        this.#latched = completed;
        this.#convert();
      }
    }
  }

  #convert(): void {
    const config = this.#registers[1] as number;
    const mux = (config >> 12) & 0b111;
    const range = FULL_SCALE[(config >> 9) & 0b111] as number;
    const pairs: readonly [number, number | undefined][] = [
      [0, 1],
      [0, 3],
      [1, 3],
      [2, 3],
      [0, undefined],
      [1, undefined],
      [2, undefined],
      [3, undefined],
    ];
    const [positive, negative] = pairs[mux] as [number, number | undefined];
    const volts = this.input(positive) - (negative === undefined ? 0 : this.input(negative));
    const raw = ads1115Code(volts, range);
    this.#registers[0] = raw & 0xffff;
    this.served.push({ volts, range, raw });
  }

  #reset(): void {
    this.#registers[0] = 0;
    this.#registers[1] = ADS1115_CONFIG_RESET & 0x7fff;
    this.#registers[2] = ADS1115_LO_THRESH_RESET;
    this.#registers[3] = ADS1115_HI_THRESH_RESET;
    this.#busyUntil = undefined;
    this.#continuousSince = undefined;
    this.#pointer = 0;
  }
}
