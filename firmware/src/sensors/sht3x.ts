// Sensirion SHT3x (SHT30/31/35) temperature and humidity sensor on I2C, ECMA-419 sensor class pattern.
// Single-shot measurements without clock stretching (the chip NACKs until done), every word CRC-checked
// (SHT3x-DIS datasheet, sections 4.3-4.12). The sample path allocates nothing.

import { type HumiditySample, SensirionDevice, type SensirionSensorOptions, serialFromWords } from "sensors/sensirion";
import Timer from "timer";

export type Sht3xRepeatability = "high" | "medium" | "low";

export interface Sht3xConfiguration {
  repeatability?: Sht3xRepeatability;
}

/** ADDR pin low; 0x45 with ADDR high. */
export const SHT3X_DEFAULT_ADDRESS = 0x44;

// Single shot, clock stretching disabled (table 9), with the maximum measurement duration (table 4).
const MEASURE: Readonly<Record<Sht3xRepeatability, { command: number; maxMs: number }>> = Object.freeze(
  {
    high: { command: 0x2400, maxMs: 16 },
    medium: { command: 0x240b, maxMs: 7 },
    low: { command: 0x2416, maxMs: 5 },
  },
  true,
);
const SOFT_RESET = 0x30a2;
const READ_SERIAL = 0x3780;
const READ_STATUS = 0xf32d;
const CLEAR_STATUS = 0x3041;
/** Soft reset takes at most 1.5 ms (table 5). */
const RESET_MS = 2;
/** Margin over the datasheet's maximum before a missing measurement counts as a timeout. */
const TIMEOUT_MARGIN_MS = 10;

/** Datasheet 4.13: T = -45 + 175 * S_T / (2^16 - 1). */
export function sht3xTemperature(raw: number): number {
  return -45 + (175 * raw) / 65535;
}

/** Datasheet 4.13: RH = 100 * S_RH / (2^16 - 1). */
export function sht3xHumidity(raw: number): number {
  return (100 * raw) / 65535;
}

export default class SHT3x {
  readonly #device: SensirionDevice;
  readonly #words = new Uint16Array(2);
  #measure = MEASURE.high;
  #serialNumber = 0;

  constructor(options: { sensor: SensirionSensorOptions }) {
    this.#device = new SensirionDevice("sht3x", 2, options.sensor, SHT3X_DEFAULT_ADDRESS);
    try {
      this.reset();
      this.#device.command(READ_SERIAL);
      this.#device.readWords(2, 1, TIMEOUT_MARGIN_MS, this.#words);
      this.#serialNumber = serialFromWords(this.#words);
    } catch (error) {
      this.close();
      throw error;
    }
  }

  /** The chip's unique 32-bit serial number, read at construction. */
  get serialNumber(): number {
    return this.#serialNumber;
  }

  configure(options: Sht3xConfiguration): void {
    const repeatability = options.repeatability ?? "high";
    const measure = MEASURE[repeatability];
    if (!measure)
      throw new RangeError(`sht3x: invalid repeatability ${String(repeatability)} (expected high, medium or low)`);
    this.#measure = measure;
  }

  /** Soft reset: the chip reloads calibration data and returns to idle. */
  reset(): void {
    this.#device.command(SOFT_RESET);
    Timer.delay(RESET_MS);
  }

  /** The 16-bit status register (datasheet 4.11; 0x8010 after reset: alert pending, reset detected). */
  readStatus(): number {
    this.#device.command(READ_STATUS);
    this.#device.readWords(1, 0, TIMEOUT_MARGIN_MS, this.#words);
    return this.#words[0] as number;
  }

  clearStatus(): void {
    this.#device.command(CLEAR_STATUS);
  }

  /** One single-shot measurement; fills target when given, so a caller can reuse one object. */
  sample(target?: HumiditySample): HumiditySample {
    const measure = this.#measure;
    this.#device.command(measure.command);
    this.#device.readWords(2, measure.maxMs, measure.maxMs + TIMEOUT_MARGIN_MS, this.#words);
    const result = target ?? { temperature: 0, humidity: 0 };
    result.temperature = sht3xTemperature(this.#words[0] as number);
    result.humidity = sht3xHumidity(this.#words[1] as number);
    return result;
  }

  close(): void {
    this.#device.close();
  }
}
