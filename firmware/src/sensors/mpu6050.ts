// InvenSense MPU-6050 accelerometer and gyroscope on I2C, ECMA-419 sensor class pattern: WHO_AM_I
// check, wake from the power-on sleep, full-scale ranges, one burst read of accelerometer, temperature
// and gyroscope (register map RM-MPU-6000A, sections 4.4-4.28). The sample path allocates nothing.

export interface Mpu6050Io {
  read(buffer: Uint8Array, stop?: boolean): unknown;
  write(buffer: Uint8Array, stop?: boolean): void;
  close?(): void;
}

export type Mpu6050IoClass = new (options: {
  data: number;
  clock: number;
  hz: number;
  address: number;
  port?: number;
}) => Mpu6050Io;

export interface Mpu6050SensorOptions {
  io: Mpu6050IoClass;
  data: number;
  clock: number;
  /** 0x68 (AD0 low) or 0x69 (AD0 high). */
  address?: number;
  hz?: number;
  port?: number;
}

/** Accelerometer full scale, ±g. */
export type Mpu6050AccelerometerRange = 2 | 4 | 8 | 16;
/** Gyroscope full scale, ±°/s. */
export type Mpu6050GyroscopeRange = 250 | 500 | 1000 | 2000;

export interface Mpu6050Configuration {
  accelerometerRange?: Mpu6050AccelerometerRange;
  gyroscopeRange?: Mpu6050GyroscopeRange;
}

export interface Vector3 {
  x: number;
  y: number;
  z: number;
}

export interface Mpu6050Sample {
  /** g */
  accelerometer: Vector3;
  /** °/s */
  gyroscope: Vector3;
  /** °C, of the die */
  temperature: number;
}

export const MPU6050_DEFAULT_ADDRESS = 0x68;
export const MPU6050_WHO_AM_I = 0x68;

const REG_GYRO_CONFIG = 0x1b;
const REG_ACCEL_CONFIG = 0x1c;
const REG_ACCEL_XOUT_H = 0x3b; // 0x3B..0x48: accel xyz, temp, gyro xyz, big-endian int16
const DATA_LENGTH = 14;
const REG_PWR_MGMT_1 = 0x6b;
const REG_WHO_AM_I = 0x75;
/** SLEEP clear, clock from the X gyro's PLL: the datasheet's recommended clock source. */
const PWR_AWAKE_PLL_X = 0x01;
const DEFAULT_HZ = 400_000;

const ACCEL_SCALES: Readonly<Record<number, { code: number; lsbPerUnit: number }>> = Object.freeze(
  {
    2: { code: 0, lsbPerUnit: 16384 },
    4: { code: 1, lsbPerUnit: 8192 },
    8: { code: 2, lsbPerUnit: 4096 },
    16: { code: 3, lsbPerUnit: 2048 },
  },
  true,
);
const GYRO_SCALES: Readonly<Record<number, { code: number; lsbPerUnit: number }>> = Object.freeze(
  {
    250: { code: 0, lsbPerUnit: 131 },
    500: { code: 1, lsbPerUnit: 65.5 },
    1000: { code: 2, lsbPerUnit: 32.8 },
    2000: { code: 3, lsbPerUnit: 16.4 },
  },
  true,
);

function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

function hex(byte: number): string {
  return `0x${byte.toString(16).padStart(2, "0")}`;
}

/** Register map 4.18: temperature in °C = TEMP_OUT / 340 + 36.53. */
export function mpu6050Temperature(raw: number): number {
  return raw / 340 + 36.53;
}

export default class MPU6050 {
  #io: Mpu6050Io | undefined;
  readonly #register = new Uint8Array(1);
  readonly #pair = new Uint8Array(2);
  readonly #data = new Uint8Array(DATA_LENGTH);
  #accelLsb = 16384;
  #gyroLsb = 131;

  constructor(options: { sensor: Mpu6050SensorOptions }) {
    const { io: IO, data, clock, address = MPU6050_DEFAULT_ADDRESS, hz = DEFAULT_HZ, port } = options.sensor;
    this.#io = port === undefined ? new IO({ data, clock, hz, address }) : new IO({ data, clock, hz, address, port });
    try {
      let id: number;
      try {
        id = this.#readRegister(REG_WHO_AM_I);
      } catch (error) {
        throw new Error(`mpu6050: no response at I2C address ${hex(address)} (${errorMessage(error)})`);
      }
      // WHO_AM_I holds the upper six address bits, 0x68 whatever AD0 is.
      if (id !== MPU6050_WHO_AM_I)
        throw new Error(`mpu6050: unexpected WHO_AM_I ${hex(id)} (expected ${hex(MPU6050_WHO_AM_I)})`);
      this.#writeRegister(REG_PWR_MGMT_1, PWR_AWAKE_PLL_X);
      this.configure({ accelerometerRange: 2, gyroscopeRange: 250 });
    } catch (error) {
      this.close();
      throw error;
    }
  }

  configure(options: Mpu6050Configuration): void {
    if (options.accelerometerRange !== undefined) {
      const scale = ACCEL_SCALES[options.accelerometerRange];
      if (!scale)
        throw new RangeError(
          `mpu6050: invalid accelerometerRange ${options.accelerometerRange} (expected 2, 4, 8 or 16)`,
        );
      this.#writeRegister(REG_ACCEL_CONFIG, scale.code << 3);
      this.#accelLsb = scale.lsbPerUnit;
    }
    if (options.gyroscopeRange !== undefined) {
      const scale = GYRO_SCALES[options.gyroscopeRange];
      if (!scale)
        throw new RangeError(
          `mpu6050: invalid gyroscopeRange ${options.gyroscopeRange} (expected 250, 500, 1000 or 2000)`,
        );
      this.#writeRegister(REG_GYRO_CONFIG, scale.code << 3);
      this.#gyroLsb = scale.lsbPerUnit;
    }
  }

  /** One burst read of all 14 data registers (one sampling instant); fills target when given. */
  sample(target?: Mpu6050Sample): Mpu6050Sample {
    const io = this.#open();
    const data = this.#data;
    this.#register[0] = REG_ACCEL_XOUT_H;
    io.write(this.#register);
    io.read(data);
    const result = target ?? { accelerometer: { x: 0, y: 0, z: 0 }, gyroscope: { x: 0, y: 0, z: 0 }, temperature: 0 };
    const accel = this.#accelLsb;
    const gyro = this.#gyroLsb;
    result.accelerometer.x = this.#int16(0) / accel;
    result.accelerometer.y = this.#int16(2) / accel;
    result.accelerometer.z = this.#int16(4) / accel;
    result.temperature = mpu6050Temperature(this.#int16(6));
    result.gyroscope.x = this.#int16(8) / gyro;
    result.gyroscope.y = this.#int16(10) / gyro;
    result.gyroscope.z = this.#int16(12) / gyro;
    return result;
  }

  close(): void {
    const io = this.#io;
    this.#io = undefined;
    io?.close?.();
  }

  #int16(offset: number): number {
    return ((((this.#data[offset] as number) << 8) | (this.#data[offset + 1] as number)) << 16) >> 16;
  }

  #readRegister(register: number): number {
    const io = this.#open();
    this.#register[0] = register;
    io.write(this.#register);
    io.read(this.#register);
    return this.#register[0] as number;
  }

  #writeRegister(register: number, value: number): void {
    this.#pair[0] = register;
    this.#pair[1] = value;
    this.#open().write(this.#pair);
  }

  #open(): Mpu6050Io {
    if (!this.#io) throw new Error("mpu6050: closed");
    return this.#io;
  }
}
