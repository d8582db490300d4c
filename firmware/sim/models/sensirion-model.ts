// Command-level models of the Sensirion SHT3x and SHT4x on the simulated I2C bus: single-shot
// measurements that take the datasheet's time (the chip NACKs reads until done), CRC-8 on every word,
// soft reset, serial number, and the SHT3x status register. Each records the conversions it served.

import { seededRandom } from "../faults.ts";
import { I2cNackError, type I2cTarget } from "../i2c-bus.ts";

/** Datasheet CRC-8: polynomial 0x31, init 0xFF, no reflection, no final XOR. */
export function sensirionCrc(bytes: ArrayLike<number>): number {
  let crc = 0xff;
  for (let i = 0; i < bytes.length; i++) {
    crc ^= bytes[i] as number;
    for (let bit = 0; bit < 8; bit++) crc = crc & 0x80 ? ((crc << 1) ^ 0x31) & 0xff : (crc << 1) & 0xff;
  }
  return crc;
}

/** One measurement the model served: raw words and the values the datasheet formulas give for them. */
export interface HumidityConversion {
  rawT: number;
  rawRH: number;
  /** °C */
  temperature: number;
  /** %RH, before any cropping */
  humidity: number;
}

export interface HumidityEnvironment {
  temperature: number;
  humidity: number;
}

export interface SensirionModelOptions {
  /** 7-bit address the model answers on (for its NACKs); default 0x44. */
  address?: number;
  seed?: number;
  serialNumber?: number;
  /** Clock that times measurements and drives the trajectory, epoch ms. */
  now?: () => number;
}

type Pending = { kind: "measure"; readyAt: number } | { kind: "words"; words: number[] };

/** What differs between the two chips: command width, command set, humidity formula. */
interface Chip {
  commandBytes: 1 | 2;
  /** Measurement durations by command, ms. */
  measure: Readonly<Record<number, number>>;
  softReset: number;
  readSerial: number;
  humidityFromRaw(raw: number): number;
  rawFromHumidity(humidity: number): number;
}

const toRaw = (value: number): number => Math.min(65535, Math.max(0, Math.round(value)));

const SHT3X: Chip = {
  commandBytes: 2,
  measure: { 9216: 15, 9227: 6, 9238: 4 },
  softReset: 0x30a2,
  readSerial: 0x3780,
  humidityFromRaw: (raw) => (100 * raw) / 65535,
  rawFromHumidity: (humidity) => toRaw((humidity * 65535) / 100),
};

const SHT4X: Chip = {
  commandBytes: 1,
  measure: { 253: 8.3, 246: 4.5, 224: 1.6 },
  softReset: 0x94,
  readSerial: 0x89,
  humidityFromRaw: (raw) => -6 + (125 * raw) / 65535,
  rawFromHumidity: (humidity) => toRaw(((humidity + 6) * 65535) / 125),
};

export const temperatureFromRaw = (raw: number): number => -45 + (175 * raw) / 65535;
const rawFromTemperature = (temperature: number): number => toRaw(((temperature + 45) * 65535) / 175);

const STATUS_AFTER_RESET = 0x8010;
const READ_STATUS = 0xf32d;
const CLEAR_STATUS = 0x3041;

abstract class SensirionModel implements I2cTarget {
  readonly served: HumidityConversion[] = [];
  readonly address: number;
  readonly serialNumber: number;
  /** Every command the chip acknowledged, in order. */
  readonly commands: number[] = [];
  readonly #chip: Chip;
  readonly #now: () => number;
  readonly #random: () => number;
  readonly #base: HumidityEnvironment;
  readonly #periodMs: number;
  #pending: Pending | undefined;
  #powered = true;
  #hold = false;
  #fixedRaw: { rawT: number; rawRH: number } | undefined;
  protected status = STATUS_AFTER_RESET;

  protected constructor(chip: Chip, options: SensirionModelOptions) {
    this.#chip = chip;
    this.address = options.address ?? 0x44;
    this.serialNumber = options.serialNumber ?? 0x0badc0de;
    this.#now = options.now ?? Date.now;
    this.#random = seededRandom(options.seed ?? 1);
    this.#base = { temperature: 21 + 3 * this.#random(), humidity: 35 + 20 * this.#random() };
    this.#periodMs = 600_000 + this.#random() * 1_200_000;
  }

  get present(): boolean {
    return this.#powered;
  }

  setPowered(on: boolean): void {
    if (on && !this.#powered) this.#reset();
    this.#powered = on;
  }

  /** A measurement that never finishes: the chip keeps NACKing (a hung sensor, for timeout tests). */
  holdMeasurement(on: boolean): void {
    this.#hold = on;
  }

  /** Serve exactly these raw words from now on. */
  serveRaw(rawT: number, rawRH: number): void {
    for (const value of [rawT, rawRH])
      if (!Number.isInteger(value) || value < 0 || value > 0xffff)
        throw new RangeError(`raw value ${value} is not 16-bit`);
    this.#fixedRaw = { rawT, rawRH };
  }

  followEnvironment(): void {
    this.#fixedRaw = undefined;
  }

  environmentAt(ms: number): HumidityEnvironment {
    const phase = Math.sin((2 * Math.PI * ms) / this.#periodMs);
    return { temperature: this.#base.temperature + 0.8 * phase, humidity: this.#base.humidity - 5 * phase };
  }

  write(bytes: Uint8Array): void {
    const width = this.#chip.commandBytes;
    if (bytes.length === 0) return; // an address-only probe: acknowledged
    if (bytes.length < width) throw new I2cNackError(this.address);
    const code = width === 2 ? ((bytes[0] as number) << 8) | (bytes[1] as number) : (bytes[0] as number);
    // A command while a measurement runs is not acknowledged (the chip is busy).
    if (this.#pending?.kind === "measure" && !this.#ready(this.#pending.readyAt)) throw new I2cNackError(this.address);
    const chip = this.#chip;
    const duration = chip.measure[code];
    if (duration !== undefined) this.#pending = { kind: "measure", readyAt: this.#now() + duration };
    else if (code === chip.softReset) this.#reset();
    else if (code === chip.readSerial)
      this.#pending = { kind: "words", words: [this.serialNumber >>> 16, this.serialNumber & 0xffff] };
    else if (!this.command(code)) throw new I2cNackError(this.address);
    this.commands.push(code);
  }

  read(length: number): Uint8Array {
    const pending = this.#pending;
    if (!pending) throw new I2cNackError(this.address);
    if (pending.kind === "measure") {
      if (!this.#ready(pending.readyAt)) throw new I2cNackError(this.address);
      this.#pending = { kind: "words", words: this.#convert() };
    }
    const words = (this.#pending as { words: number[] }).words;
    this.#pending = undefined;
    const out = new Uint8Array(length);
    for (let i = 0; i < length; i++) {
      const word = words[Math.floor(i / 3)] ?? 0xffff;
      const pair = [word >> 8, word & 0xff];
      out[i] = i % 3 === 2 ? sensirionCrc(pair) : (pair[i % 3] as number);
    }
    return out;
  }

  /** Chip-specific commands; false when the chip does not know code. */
  protected command(_code: number): boolean {
    return false;
  }

  /** Queue words for the next read. */
  protected respond(words: number[]): void {
    this.#pending = { kind: "words", words };
  }

  #ready(readyAt: number): boolean {
    return !this.#hold && this.#now() >= readyAt;
  }

  #reset(): void {
    this.#pending = undefined;
    this.status = STATUS_AFTER_RESET;
  }

  #convert(): number[] {
    const chip = this.#chip;
    let raw = this.#fixedRaw;
    if (!raw) {
      const environment = this.environmentAt(this.#now());
      raw = {
        rawT: rawFromTemperature(environment.temperature + (this.#random() - 0.5) * 0.02),
        rawRH: chip.rawFromHumidity(environment.humidity + (this.#random() - 0.5) * 0.1),
      };
    }
    this.served.push({
      ...raw,
      temperature: temperatureFromRaw(raw.rawT),
      humidity: chip.humidityFromRaw(raw.rawRH),
    });
    return [raw.rawT, raw.rawRH];
  }
}

export class Sht3xModel extends SensirionModel {
  constructor(options: SensirionModelOptions = {}) {
    super(SHT3X, options);
  }

  protected override command(code: number): boolean {
    if (code === READ_STATUS) this.respond([this.status]);
    else if (code === CLEAR_STATUS)
      this.status &= ~0x8c10; // alert, RH and T tracking alerts, reset detected
    else return false;
    return true;
  }
}

export class Sht4xModel extends SensirionModel {
  constructor(options: SensirionModelOptions = {}) {
    super(SHT4X, options);
  }
}
