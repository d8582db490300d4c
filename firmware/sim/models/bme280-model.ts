// Register-level model of a Bosch BME280: a BMP280 model (chip id 0x60) for temperature and pressure,
// with the humidity registers laid over it: trimming H1..H6, ctrl_hum (latched by the next ctrl_meas
// write, as datasheet 5.4.3 says) and hum_msb/lsb. Records each conversion with the datasheet's
// floating-point humidity formula (section 8.1), independent of the firmware's integer path.

import { type Bmp280Conversion, Bmp280Model, type Bmp280ModelOptions } from "../bmp280-model.ts";
import { seededRandom } from "../faults.ts";
import type { I2cTarget } from "../i2c-bus.ts";

export interface Bme280HumidityTrimming {
  H1: number;
  H2: number;
  H3: number;
  H4: number;
  H5: number;
  H6: number;
}

/** Humidity trimming read from a production BME280 (the datasheet gives no example). */
export const TYPICAL_HUMIDITY_TRIMMING: Readonly<Bme280HumidityTrimming> = Object.freeze({
  H1: 75,
  H2: 362,
  H3: 0,
  H4: 313,
  H5: 50,
  H6: 30,
});

export interface Bme280Conversion extends Bmp280Conversion {
  adcH: number;
  /** %RH from the float formula */
  humidity: number;
}

export interface Bme280ModelOptions extends Omit<Bmp280ModelOptions, "chipId"> {
  humidityTrimming?: Partial<Bme280HumidityTrimming>;
}

const REG_H1 = 0xa1;
const REG_H2 = 0xe1;
const REG_RESET = 0xe0;
const REG_CTRL_HUM = 0xf2;
const REG_CTRL_MEAS = 0xf4;
const REG_HUM_MSB = 0xfd;
const RESET_COMMAND = 0xb6;
const HUMIDITY_NO_DATA = 0x8000;

/** Datasheet 8.1 `bme280_compensate_H_double`, clamped to 0..100 %RH. */
export function humidityFloat(trim: Bme280HumidityTrimming, adcH: number, tFine: number): number {
  let h = tFine - 76800;
  h =
    (adcH - (trim.H4 * 64 + (trim.H5 / 16384) * h)) *
    ((trim.H2 / 65536) * (1 + (trim.H6 / 67108864) * h * (1 + (trim.H3 / 67108864) * h)));
  h *= 1 - (trim.H1 * h) / 524288;
  return Math.min(100, Math.max(0, h));
}

export class Bme280Model implements I2cTarget {
  readonly served: Bme280Conversion[] = [];
  readonly pressureModel: Bmp280Model;
  readonly humidityTrimming: Readonly<Bme280HumidityTrimming>;
  readonly #registers = new Uint8Array(256);
  readonly #now: () => number;
  readonly #base: number;
  readonly #periodMs: number;
  readonly #random: () => number;
  #pointer = 0;
  #activeHumidityOversampling = 0;
  #fixedAdcH: number | undefined;

  constructor(options: Bme280ModelOptions = {}) {
    this.pressureModel = new Bmp280Model({ ...options, chipId: 0x60 });
    this.humidityTrimming = Object.freeze({ ...TYPICAL_HUMIDITY_TRIMMING, ...options.humidityTrimming });
    this.#now = options.now ?? Date.now;
    this.#random = seededRandom((options.seed ?? 1) ^ 0x4b1d);
    this.#base = 40 + 15 * this.#random();
    this.#periodMs = 900_000 + this.#random() * 1_800_000;
    const t = this.humidityTrimming;
    const r = this.#registers;
    r[REG_H1] = t.H1;
    r[REG_H2] = t.H2 & 0xff;
    r[REG_H2 + 1] = (t.H2 >> 8) & 0xff;
    r[REG_H2 + 2] = t.H3;
    r[REG_H2 + 3] = (t.H4 >> 4) & 0xff;
    r[REG_H2 + 4] = ((t.H5 & 0x0f) << 4) | (t.H4 & 0x0f);
    r[REG_H2 + 5] = (t.H5 >> 4) & 0xff;
    r[REG_H2 + 6] = t.H6 & 0xff;
    this.#reset();
  }

  get present(): boolean {
    return this.pressureModel.present;
  }

  setPowered(on: boolean): void {
    if (on && !this.present) this.#reset();
    this.pressureModel.setPowered(on);
  }

  /** %RH the trajectory gives at epoch ms. */
  humidityAt(ms: number): number {
    return this.#base + 8 * Math.sin((2 * Math.PI * ms) / this.#periodMs);
  }

  /** Serve exactly these raw values from now on. */
  serveRaw(adcT: number, adcP: number, adcH: number): void {
    if (!Number.isInteger(adcH) || adcH < 0 || adcH > 0xffff) throw new RangeError(`raw value ${adcH} is not 16-bit`);
    this.pressureModel.serveRaw(adcT, adcP);
    this.#fixedAdcH = adcH;
  }

  write(bytes: Uint8Array): void {
    if (bytes.length === 0) return;
    for (let i = 0; i + 1 < bytes.length; i += 2) {
      const register = bytes[i] as number;
      const value = bytes[i + 1] as number;
      if (register === REG_CTRL_HUM) this.#registers[REG_CTRL_HUM] = value & 0b111;
      else if (register === REG_RESET && value === RESET_COMMAND) this.#reset();
      // ctrl_hum becomes effective with this write (datasheet 5.4.3).
      else if (register === REG_CTRL_MEAS) this.#activeHumidityOversampling = this.#registers[REG_CTRL_HUM] as number;
    }
    this.pressureModel.write(bytes);
    this.#pointer = bytes.length % 2 === 1 ? (bytes.at(-1) as number) : (bytes.at(-2) as number);
  }

  read(length: number): Uint8Array {
    const start = this.#pointer;
    const before = this.pressureModel.served.length;
    const out = this.pressureModel.read(length);
    const conversion = this.pressureModel.served[before];
    if (conversion) this.#convertHumidity(conversion);
    for (let i = 0; i < length; i++) {
      const register = (start + i) & 0xff;
      if (
        register === REG_H1 ||
        register === REG_CTRL_HUM ||
        register >= REG_HUM_MSB ||
        (register >= REG_H2 && register < REG_H2 + 7)
      )
        out[i] = this.#registers[register] as number;
    }
    this.#pointer = (start + length) & 0xff;
    return out;
  }

  #reset(): void {
    this.#registers[REG_CTRL_HUM] = 0;
    this.#activeHumidityOversampling = 0;
    this.#setHumidity(HUMIDITY_NO_DATA);
  }

  #convertHumidity(conversion: Bmp280Conversion): void {
    const tFine = Math.trunc(conversion.temperature * 5120);
    let adcH = HUMIDITY_NO_DATA;
    if (this.#activeHumidityOversampling !== 0) {
      const target = this.humidityAt(this.#now()) + (this.#random() - 0.5) * 0.05;
      adcH = this.#fixedAdcH ?? this.#invert(target, tFine);
    }
    this.#setHumidity(adcH);
    this.served.push({ ...conversion, adcH, humidity: humidityFloat(this.humidityTrimming, adcH, tFine) });
  }

  /** Smallest adc_H whose humidity reaches target (the formula rises with adc_H). */
  #invert(target: number, tFine: number): number {
    let lo = 0;
    let hi = 0xffff;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (humidityFloat(this.humidityTrimming, mid, tFine) < target) lo = mid + 1;
      else hi = mid;
    }
    return lo === HUMIDITY_NO_DATA ? lo + 1 : lo;
  }

  #setHumidity(adcH: number): void {
    this.#registers[REG_HUM_MSB] = adcH >> 8;
    this.#registers[REG_HUM_MSB + 1] = adcH & 0xff;
  }
}
