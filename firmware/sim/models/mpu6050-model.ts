// Register-level model of an InvenSense MPU-6050 on the simulated I2C bus: the register map's reset
// values (all 0x00 but PWR_MGMT_1 0x40, asleep, and WHO_AM_I 0x68), auto-incrementing burst reads,
// full-scale range bits, data registers that hold still while the chip sleeps, and a device at rest
// (1 g on Z) with seeded noise. Each burst read of the data registers latches and records one sample.

import { seededRandom } from "../faults.ts";
import type { I2cTarget } from "../i2c-bus.ts";

export const REG_GYRO_CONFIG = 0x1b;
export const REG_ACCEL_CONFIG = 0x1c;
export const REG_ACCEL_XOUT_H = 0x3b;
export const REG_GYRO_ZOUT_L = 0x48;
export const REG_PWR_MGMT_1 = 0x6b;
export const REG_WHO_AM_I = 0x75;
const PWR_MGMT_1_RESET = 0x40;
const DEVICE_RESET = 0x80;
const SLEEP = 0x40;

const ACCEL_LSB = [16384, 8192, 4096, 2048] as const;
const GYRO_LSB = [131, 65.5, 32.8, 16.4] as const;

export interface Motion {
  /** g */
  accelerometer: [number, number, number];
  /** °/s */
  gyroscope: [number, number, number];
  /** °C */
  temperature: number;
}

/** One latched sample: the raw words and the physical motion they encode. */
export interface Mpu6050Reading {
  raw: { accelerometer: number[]; temperature: number; gyroscope: number[] };
  motion: Motion;
}

export interface Mpu6050ModelOptions {
  seed?: number;
}

const int16 = (value: number): number => Math.max(-32768, Math.min(32767, Math.round(value)));

export class Mpu6050Model implements I2cTarget {
  readonly served: Mpu6050Reading[] = [];
  readonly #registers = new Uint8Array(128);
  readonly #random: () => number;
  #pointer = 0;
  #powered = true;
  #fixed: Motion | undefined;

  constructor(options: Mpu6050ModelOptions = {}) {
    this.#random = seededRandom(options.seed ?? 1);
    this.#reset();
  }

  get present(): boolean {
    return this.#powered;
  }

  setPowered(on: boolean): void {
    if (on && !this.#powered) this.#reset();
    this.#powered = on;
  }

  get asleep(): boolean {
    return ((this.#registers[REG_PWR_MGMT_1] as number) & SLEEP) !== 0;
  }

  /** Serve this motion from now on instead of a device at rest. */
  serveMotion(motion: Motion | undefined): void {
    this.#fixed = motion;
  }

  write(bytes: Uint8Array): void {
    if (bytes.length === 0) return;
    // A write is a start register followed by data bytes for it and the next registers.
    let register = (bytes[0] as number) & 0x7f;
    for (let i = 1; i < bytes.length; i++) {
      this.#writeRegister(register, bytes[i] as number);
      register = (register + 1) & 0x7f;
    }
    this.#pointer = bytes.length === 1 ? register : this.#pointer;
  }

  read(length: number): Uint8Array {
    if (this.#pointer >= REG_ACCEL_XOUT_H && this.#pointer <= REG_GYRO_ZOUT_L && !this.asleep) this.#latch();
    const out = new Uint8Array(length);
    for (let i = 0; i < length; i++) {
      out[i] = this.#registers[this.#pointer] as number;
      this.#pointer = (this.#pointer + 1) & 0x7f;
    }
    return out;
  }

  #writeRegister(register: number, value: number): void {
    if (register === REG_WHO_AM_I || (register >= REG_ACCEL_XOUT_H && register <= REG_GYRO_ZOUT_L)) return;
    if (register === REG_PWR_MGMT_1 && value & DEVICE_RESET) {
      this.#reset();
      return;
    }
    this.#registers[register] = value;
  }

  #reset(): void {
    this.#registers.fill(0);
    this.#registers[REG_PWR_MGMT_1] = PWR_MGMT_1_RESET;
    this.#registers[REG_WHO_AM_I] = 0x68;
  }

  #latch(): void {
    const noise = (scale: number): number => (this.#random() - 0.5) * scale;
    const motion: Motion = this.#fixed ?? {
      accelerometer: [noise(0.02), noise(0.02), 1 + noise(0.02)],
      gyroscope: [noise(0.5), noise(0.5), noise(0.5)],
      temperature: 27 + noise(0.2),
    };
    const accelLsb = ACCEL_LSB[((this.#registers[REG_ACCEL_CONFIG] as number) >> 3) & 0b11] as number;
    const gyroLsb = GYRO_LSB[((this.#registers[REG_GYRO_CONFIG] as number) >> 3) & 0b11] as number;
    const raw = {
      accelerometer: motion.accelerometer.map((g) => int16(g * accelLsb)),
      temperature: int16((motion.temperature - 36.53) * 340),
      gyroscope: motion.gyroscope.map((dps) => int16(dps * gyroLsb)),
    };
    const words = [...raw.accelerometer, raw.temperature, ...raw.gyroscope];
    words.forEach((word, index) => {
      this.#registers[REG_ACCEL_XOUT_H + index * 2] = (word >> 8) & 0xff;
      this.#registers[REG_ACCEL_XOUT_H + index * 2 + 1] = word & 0xff;
    });
    this.served.push({ raw, motion });
  }
}
