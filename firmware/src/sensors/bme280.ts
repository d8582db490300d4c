// Bosch BME280 temperature, pressure and humidity sensor on I2C or SPI, ECMA-419 sensor class pattern.
// Composes the BMP280 core (same registers, trimming and compensation for temperature and pressure) and
// adds humidity: its trimming, ctrl_hum and the datasheet's integer compensation (BST-BME280-DS002,
// section 4.2.3). The sample path allocates nothing.

import {
  BMP280_DEFAULT_ADDRESS,
  type Bmp280Configuration,
  Bmp280Core,
  type Bmp280Oversampling,
  type Bmp280SensorOptions,
  openBoschRegisters,
} from "sensors/bmp280";

export const BME280_CHIP_ID = 0x60;
export const BME280_DEFAULT_ADDRESS = BMP280_DEFAULT_ADDRESS;

export interface Bme280Configuration extends Bmp280Configuration {
  humidityOversampling?: Bmp280Oversampling;
}

export interface Bme280Sample {
  /** °C, resolution 0.01. */
  temperature: number;
  /** Pa, resolution 1/256. */
  pressure: number;
  /** %RH, resolution 1/1024. */
  humidity: number;
}

/** Humidity trimming dig_H1..dig_H6. */
export interface Bme280HumidityCalibration {
  H1: number;
  H2: number;
  H3: number;
  H4: number;
  H5: number;
  H6: number;
}

const REG_H1 = 0xa1;
const REG_H2 = 0xe1; // 0xE1..0xE7
const REG_CTRL_HUM = 0xf2;
const DATA_LENGTH = 8; // press (3), temp (3), hum (2)
/** What the humidity registers hold after reset, or when humidity measurement is skipped. */
const HUMIDITY_NO_DATA = 0x8000;
const OVERSAMPLING_CODES: Readonly<Record<number, number>> = Object.freeze({ 1: 1, 2: 2, 4: 3, 8: 4, 16: 5 });

/**
 * Datasheet 4.2.3 `bme280_compensate_H_int32`: humidity in %RH as Q22.10 (divide by 1024). The
 * products stay inside 32 bits for valid trimming, as in the C code; Math.imul keeps them there.
 */
export function compensateHumidity(cal: Bme280HumidityCalibration, adcH: number, tFine: number): number {
  let v = tFine - 76800;
  const a = (((adcH << 14) - (cal.H4 << 20) - Math.imul(cal.H5, v) + 16384) >> 15) | 0;
  const b = ((Math.imul(v, cal.H6) >> 10) * ((Math.imul(v, cal.H3) >> 11) + 32768)) >> 10;
  v = Math.imul(a, (Math.imul(b + 2097152, cal.H2) + 8192) >> 14);
  v -= (Math.imul(Math.imul(v >> 15, v >> 15) >> 7, cal.H1) >> 4) | 0;
  if (v < 0) v = 0;
  if (v > 419430400) v = 419430400;
  return v >> 12;
}

export default class BME280 {
  readonly #core: Bmp280Core;
  readonly humidityCalibration: Bme280HumidityCalibration = { H1: 0, H2: 0, H3: 0, H4: 0, H5: 0, H6: 0 };
  readonly #data = new Uint8Array(DATA_LENGTH);
  #humidityOversampling: Bmp280Oversampling = 1;

  /** I2C options ({ io, data, clock, address }) or SPI options ({ io, in, out, clock, select }). */
  constructor(options: { sensor: Bmp280SensorOptions }) {
    this.#core = new Bmp280Core(openBoschRegisters(options.sensor), "bme280", BME280_CHIP_ID);
    try {
      this.#readHumidityCalibration();
      this.configure({});
    } catch (error) {
      this.close();
      throw error;
    }
  }

  configure(options: Bme280Configuration): void {
    const { humidityOversampling = this.#humidityOversampling, ...rest } = options;
    const osrsH = OVERSAMPLING_CODES[humidityOversampling];
    if (osrsH === undefined)
      throw new RangeError(
        `bme280: invalid humidityOversampling ${humidityOversampling} (expected one of 1, 2, 4, 8, 16)`,
      );
    // ctrl_hum takes effect only with the next write to ctrl_meas, which the core's configure makes.
    this.#core.registers.write(REG_CTRL_HUM, osrsH);
    this.#core.configure(rest);
    this.#humidityOversampling = humidityOversampling;
  }

  /** One burst read of all data registers; fills target when given. */
  sample(target?: Bme280Sample): Bme280Sample {
    const core = this.#core;
    const data = this.#data;
    core.readData(data);
    const result = target ?? { temperature: 0, pressure: 0, humidity: 0 };
    const tFine = core.compensate(data, result);
    const adcH = ((data[6] as number) << 8) | (data[7] as number);
    if (adcH === HUMIDITY_NO_DATA) throw new Error("bme280: no humidity conversion available");
    result.humidity = compensateHumidity(this.humidityCalibration, adcH, tFine) / 1024;
    return result;
  }

  close(): void {
    this.#core.close();
  }

  #readHumidityCalibration(): void {
    const registers = this.#core.registers;
    const h1 = new Uint8Array(1);
    const bytes = new Uint8Array(7);
    registers.read(REG_H1, h1);
    registers.read(REG_H2, bytes);
    const cal = this.humidityCalibration;
    const e4 = bytes[3] as number;
    const e5 = bytes[4] as number;
    const e6 = bytes[5] as number;
    cal.H1 = h1[0] as number;
    cal.H2 = ((((bytes[1] as number) << 8) | (bytes[0] as number)) << 16) >> 16;
    cal.H3 = bytes[2] as number;
    // H4 and H5 are signed 12-bit values sharing register 0xE5 (datasheet table 16).
    cal.H4 = ((e4 << 24) >> 20) | (e5 & 0x0f);
    cal.H5 = ((e6 << 24) >> 20) | (e5 >> 4);
    cal.H6 = ((bytes[6] as number) << 24) >> 24;
  }
}
