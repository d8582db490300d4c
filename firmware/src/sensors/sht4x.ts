// Sensirion SHT4x (SHT40/41/45) temperature and humidity sensor on I2C, ECMA-419 sensor class pattern.
// One-byte commands, the chip NACKs while it measures, every word CRC-checked (SHT4x datasheet,
// sections 4.4-4.6). The sample path allocates nothing.

import { type HumiditySample, SensirionDevice, type SensirionSensorOptions, serialFromWords } from "sensors/sensirion";
import Timer from "timer";

export type Sht4xPrecision = "high" | "medium" | "low";

export interface Sht4xConfiguration {
  precision?: Sht4xPrecision;
}

/** SHT40-AD1B; the -BD1B answers 0x45 and the -CD1B 0x46. */
export const SHT4X_DEFAULT_ADDRESS = 0x44;

// Measure T & RH commands (table 7) with their maximum durations (table 4), rounded up to whole ms.
const MEASURE: Readonly<Record<Sht4xPrecision, { command: number; maxMs: number }>> = Object.freeze(
  {
    high: { command: 0xfd, maxMs: 9 },
    medium: { command: 0xf6, maxMs: 5 },
    low: { command: 0xe0, maxMs: 2 },
  },
  true,
);
const SOFT_RESET = 0x94;
const READ_SERIAL = 0x89;
/** Soft reset takes at most 1 ms. */
const RESET_MS = 1;
const TIMEOUT_MARGIN_MS = 10;

/** Datasheet 4.6: T = -45 + 175 * S_T / (2^16 - 1). */
export function sht4xTemperature(raw: number): number {
  return -45 + (175 * raw) / 65535;
}

/** Datasheet 4.6: RH = -6 + 125 * S_RH / (2^16 - 1), cropped to 0..100 %RH as the datasheet advises. */
export function sht4xHumidity(raw: number): number {
  const humidity = -6 + (125 * raw) / 65535;
  return Math.min(100, Math.max(0, humidity));
}

export default class SHT4x {
  readonly #device: SensirionDevice;
  readonly #words = new Uint16Array(2);
  #measure = MEASURE.high;
  #serialNumber = 0;

  constructor(options: { sensor: SensirionSensorOptions }) {
    this.#device = new SensirionDevice("sht4x", 1, options.sensor, SHT4X_DEFAULT_ADDRESS);
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

  configure(options: Sht4xConfiguration): void {
    const precision = options.precision ?? "high";
    const measure = MEASURE[precision];
    if (!measure) throw new RangeError(`sht4x: invalid precision ${String(precision)} (expected high, medium or low)`);
    this.#measure = measure;
  }

  reset(): void {
    this.#device.command(SOFT_RESET);
    Timer.delay(RESET_MS);
  }

  /** One measurement; fills target when given, so a caller can reuse one object. */
  sample(target?: HumiditySample): HumiditySample {
    const measure = this.#measure;
    this.#device.command(measure.command);
    this.#device.readWords(2, measure.maxMs, measure.maxMs + TIMEOUT_MARGIN_MS, this.#words);
    const result = target ?? { temperature: 0, humidity: 0 };
    result.temperature = sht4xTemperature(this.#words[0] as number);
    result.humidity = sht4xHumidity(this.#words[1] as number);
    return result;
  }

  close(): void {
    this.#device.close();
  }
}
