// Bosch BMP280 temperature and pressure sensor on I2C or SPI, in the ECMA-419 sensor class pattern, with
// the datasheet's integer compensation (BST-BMP280-DS001, section 8.2). The sample path allocates nothing.
// Bmp280Core is the part the BME280 driver shares.

/** The I2C IO class the driver opens its device with (Moddable's `embedded:io/i2c` on the device). */
export interface Bmp280Io {
  read(buffer: Uint8Array, stop?: boolean): unknown;
  write(buffer: Uint8Array, stop?: boolean): void;
  // Optional only because the SDK's own embedded:io/i2c typings leave close() out; ECMA-419 has it.
  close?(): void;
}

export type Bmp280IoClass = new (options: {
  data: number;
  clock: number;
  hz: number;
  address: number;
  port?: number;
}) => Bmp280Io;

/** The SPI IO class (`embedded:io/spi`): select stays asserted across calls until flush(true). */
export interface BoschSpiIo {
  read(buffer: Uint8Array): unknown;
  write(buffer: Uint8Array): void;
  flush(deselect?: boolean): void;
  close?(): void;
}

export type BoschSpiIoClass = new (options: {
  in: number;
  out: number;
  clock: number;
  select: number;
  hz: number;
  mode: number;
  port?: number;
}) => BoschSpiIo;

export interface Bmp280I2cOptions {
  io: Bmp280IoClass;
  data: number;
  clock: number;
  /** 0x76 (SDO to GND) or 0x77 (SDO to VDDIO). */
  address?: number;
  hz?: number;
  port?: number;
}

/** SPI wiring (CSB to select): mode 0, up to 10 MHz. */
export interface Bmp280SpiOptions {
  io: BoschSpiIoClass;
  in: number;
  out: number;
  clock: number;
  select: number;
  hz?: number;
  port?: number;
}

export type Bmp280SensorOptions = Bmp280I2cOptions | Bmp280SpiOptions;

export type Bmp280Mode = "sleep" | "normal";
export type Bmp280Oversampling = 1 | 2 | 4 | 8 | 16;
export type Bmp280Filter = 0 | 2 | 4 | 8 | 16;
export type Bmp280Standby = 0.5 | 62.5 | 125 | 250 | 500 | 1000 | 2000 | 4000;

export interface Bmp280Configuration {
  mode?: Bmp280Mode;
  temperatureOversampling?: Bmp280Oversampling;
  pressureOversampling?: Bmp280Oversampling;
  /** IIR filter coefficient; 0 turns the filter off. */
  filter?: Bmp280Filter;
  /** Standby time between conversions in normal mode, in milliseconds. */
  standby?: Bmp280Standby;
}

export interface Bmp280Sample {
  /** °C, resolution 0.01. */
  temperature: number;
  /** Pa, resolution 1/256. */
  pressure: number;
}

/** Trimming parameters dig_T1..dig_P9 (T1 and P1 unsigned, the others signed 16-bit). */
export interface Bmp280Calibration {
  T1: number;
  T2: number;
  T3: number;
  P1: number;
  P2: number;
  P3: number;
  P4: number;
  P5: number;
  P6: number;
  P7: number;
  P8: number;
  P9: number;
}

export const BMP280_CHIP_ID = 0x58;
export const BMP280_DEFAULT_ADDRESS = 0x76;

const REG_CALIBRATION = 0x88; // 0x88..0x9F, 12 little-endian words
const CALIBRATION_LENGTH = 24;
const REG_ID = 0xd0;
const REG_CTRL_MEAS = 0xf4;
const REG_CONFIG = 0xf5;
const REG_PRESS_MSB = 0xf7; // 0xF7..0xFC: press msb, lsb, xlsb, temp msb, lsb, xlsb
const DATA_LENGTH = 6;

const MODE_SLEEP = 0b00;
const MODE_NORMAL = 0b11;

/** What the data registers hold after reset, or when a measurement was skipped. */
const ADC_NO_DATA = 0x80000;

const DEFAULT_HZ = 400_000;
const DEFAULT_SPI_HZ = 1_000_000;

const OVERSAMPLING_CODES: Readonly<Record<number, number>> = Object.freeze({ 1: 1, 2: 2, 4: 3, 8: 4, 16: 5 });
const FILTER_CODES: Readonly<Record<number, number>> = Object.freeze({ 0: 0, 2: 1, 4: 2, 8: 3, 16: 4 });
const STANDBY_CODES: Readonly<Record<number, number>> = Object.freeze({
  0.5: 0,
  62.5: 1,
  125: 2,
  250: 3,
  500: 4,
  1000: 5,
  2000: 6,
  4000: 7,
});

// The Bosch "indoor navigation" profile, with a gentler filter so a step change shows within seconds.
const DEFAULT_CONFIGURATION: Readonly<Required<Bmp280Configuration>> = Object.freeze({
  mode: "normal",
  temperatureOversampling: 2,
  pressureOversampling: 16,
  filter: 4,
  standby: 500,
});

function hex(byte: number): string {
  return `0x${byte.toString(16).padStart(2, "0")}`;
}

function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

function code(chip: string, table: Record<number, number>, name: string, value: number): number {
  const encoded = table[value];
  if (encoded === undefined)
    throw new RangeError(`${chip}: invalid ${name} ${value} (expected one of ${Object.keys(table).join(", ")})`);
  return encoded;
}

/**
 * Datasheet 8.2 `bmp280_compensate_T_int32`. Returns t_fine; the temperature in 0.01 °C is
 * `(t_fine * 5 + 128) >> 8`. Math.imul keeps the C code's 32-bit products.
 */
export function compensateTemperature(cal: Bmp280Calibration, adcT: number): number {
  const var1 = Math.imul((adcT >> 3) - (cal.T1 << 1), cal.T2) >> 11;
  const delta = (adcT >> 4) - cal.T1;
  const var2 = Math.imul(Math.imul(delta, delta) >> 12, cal.T3) >> 14;
  return var1 + var2;
}

/** Temperature in °C (resolution 0.01) from t_fine, as the datasheet's integer code rounds it. */
export function temperatureFromFine(tFine: number): number {
  return ((tFine * 5 + 128) >> 8) / 100;
}

const TWO_POW_33 = 2 ** 33;

/** floor(n * m / d) for a non-negative integer n < 2^53, 0 < m*d small enough that m*d < 2^53. */
function mulDivFloor(n: number, m: number, d: number): number {
  let q = Math.floor(n / d);
  let r = n - q * d;
  // The float quotient can be one off; the exact remainder says which way.
  if (r < 0) {
    q -= 1;
    r += d;
  } else if (r >= d) {
    q += 1;
    r -= d;
  }
  let s = Math.floor((r * m) / d);
  const r2 = r * m - s * d;
  if (r2 < 0) s -= 1;
  else if (r2 >= d) s += 1;
  return q * m + s;
}

/**
 * Datasheet 8.2 `bmp280_compensate_P_int64`, evaluated exactly without BigInt: returns pressure in Pa
 * as Q24.8 (divide by 256). We take the 64-bit variant because the 32-bit one is off by up to ~6 Pa
 * against the datasheet's floating-point formula; this one stays within 0.5 Pa. Every intermediate
 * fits a double exactly (< 2^53) for t_fine of -40..85 °C and any 16-bit coefficients, except two
 * products, which are split: (2^47 + var1) * dig_P1 >> 33 and the division by var1. ">>" on the C
 * int64 values is an arithmetic shift, i.e. Math.floor of the division by the power of two.
 */
export function compensatePressure(cal: Bmp280Calibration, adcP: number, tFine: number): number {
  let var1 = tFine - 128000;
  let var2 = var1 * var1 * cal.P6;
  var2 += var1 * cal.P5 * 131072; // << 17
  var2 += cal.P4 * 34359738368; // << 35
  var1 = Math.floor((var1 * var1 * cal.P3) / 256) + var1 * cal.P2 * 4096; // >> 8, << 12
  const x = 140737488355328 + var1; // 2^47 + var1
  const xHigh = Math.floor(x / TWO_POW_33);
  const xLow = x - xHigh * TWO_POW_33;
  var1 = xHigh * cal.P1 + Math.floor((xLow * cal.P1) / TWO_POW_33);
  if (var1 <= 0) return 0; // the C code avoids division by zero; negative only with corrupt trimming
  const numerator = (1048576 - adcP) * 2147483648 - var2; // p << 31
  // C int64 division truncates toward zero.
  let p = numerator >= 0 ? mulDivFloor(numerator, 3125, var1) : -mulDivFloor(-numerator, 3125, var1);
  const p13 = Math.floor(p / 8192);
  var1 = Math.floor((cal.P9 * p13 * p13) / 33554432); // >> 25
  var2 = Math.floor((cal.P8 * p) / 524288); // >> 19
  p = Math.floor((p + var1 + var2) / 256) + cal.P7 * 16;
  return p;
}

/** Register access over I2C or SPI: the chip's register protocol is the same over either. */
export interface BoschRegisters {
  /** Where the chip sits, for error messages. */
  readonly where: string;
  read(register: number, target: Uint8Array): void;
  write(register: number, value: number): void;
  close(): void;
}

class I2cRegisters implements BoschRegisters {
  readonly where: string;
  #io: Bmp280Io | undefined;
  readonly #register = new Uint8Array(1);
  readonly #pair = new Uint8Array(2);

  constructor(options: Bmp280I2cOptions) {
    const { io: IO, data, clock, address = BMP280_DEFAULT_ADDRESS, hz = DEFAULT_HZ, port } = options;
    this.where = `I2C address ${hex(address)}`;
    this.#io = port === undefined ? new IO({ data, clock, hz, address }) : new IO({ data, clock, hz, address, port });
  }

  read(register: number, target: Uint8Array): void {
    const io = this.#open();
    this.#register[0] = register;
    io.write(this.#register);
    io.read(target);
  }

  write(register: number, value: number): void {
    const pair = this.#pair;
    pair[0] = register;
    pair[1] = value;
    this.#open().write(pair);
  }

  close(): void {
    const io = this.#io;
    this.#io = undefined;
    io?.close?.();
  }

  #open(): Bmp280Io {
    if (!this.#io) throw new Error("closed");
    return this.#io;
  }
}

/**
 * Datasheet 5.3: in SPI mode bit 7 of the control byte is the RW bit (1 read, 0 write) in place of
 * the register address's top bit; a read auto-increments while select stays low.
 */
class SpiRegisters implements BoschRegisters {
  readonly where: string;
  #io: BoschSpiIo | undefined;
  readonly #control = new Uint8Array(1);
  readonly #pair = new Uint8Array(2);

  constructor(options: Bmp280SpiOptions) {
    const { io: IO, in: input, out, clock, select, hz = DEFAULT_SPI_HZ, port } = options;
    this.where = `SPI select pin ${select}`;
    const settings = { in: input, out, clock, select, hz, mode: 0 };
    this.#io = port === undefined ? new IO(settings) : new IO({ ...settings, port });
  }

  read(register: number, target: Uint8Array): void {
    const io = this.#open();
    this.#control[0] = register | 0x80;
    io.write(this.#control);
    io.read(target);
    io.flush(true);
  }

  write(register: number, value: number): void {
    const io = this.#open();
    const pair = this.#pair;
    pair[0] = register & 0x7f;
    pair[1] = value;
    io.write(pair);
    io.flush(true);
  }

  close(): void {
    const io = this.#io;
    this.#io = undefined;
    io?.close?.();
  }

  #open(): BoschSpiIo {
    if (!this.#io) throw new Error("closed");
    return this.#io;
  }
}

/** Opens the bus the options describe: SPI when they name a select pin, I2C otherwise. */
export function openBoschRegisters(options: Bmp280SensorOptions): BoschRegisters {
  return "select" in options ? new SpiRegisters(options) : new I2cRegisters(options);
}

/**
 * What the BMP280 and BME280 share: chip-id check, trimming, ctrl_meas/config, and the temperature
 * and pressure path. A BME280 driver composes one of these and adds humidity.
 */
export class Bmp280Core {
  readonly name: string;
  readonly calibration: Bmp280Calibration = {
    T1: 0,
    T2: 0,
    T3: 0,
    P1: 0,
    P2: 0,
    P3: 0,
    P4: 0,
    P5: 0,
    P6: 0,
    P7: 0,
    P8: 0,
    P9: 0,
  };
  #registers: BoschRegisters | undefined;
  readonly #configuration: Required<Bmp280Configuration> = { ...DEFAULT_CONFIGURATION };
  readonly #id = new Uint8Array(1);

  /** Checks the chip id and reads the trimming; closes the registers when either fails. */
  constructor(registers: BoschRegisters, name: string, chipId: number) {
    this.name = name;
    this.#registers = registers;
    try {
      this.#checkChipId(chipId);
      this.#readCalibration();
    } catch (error) {
      this.close();
      throw error;
    }
  }

  get registers(): BoschRegisters {
    if (!this.#registers) throw new Error(`${this.name}: closed`);
    return this.#registers;
  }

  configure(options: Bmp280Configuration): void {
    const next = { ...this.#configuration, ...options };
    const name = this.name;
    const osrsT = code(name, OVERSAMPLING_CODES, "temperatureOversampling", next.temperatureOversampling);
    const osrsP = code(name, OVERSAMPLING_CODES, "pressureOversampling", next.pressureOversampling);
    const filter = code(name, FILTER_CODES, "filter", next.filter);
    const standby = code(name, STANDBY_CODES, "standby", next.standby);
    if (next.mode !== "sleep" && next.mode !== "normal")
      throw new RangeError(`${name}: invalid mode ${String(next.mode)} (expected sleep or normal)`);
    const measure = (osrsT << 5) | (osrsP << 2);
    const registers = this.registers;
    // The datasheet: writes to config may be ignored outside sleep mode, so sleep first.
    registers.write(REG_CTRL_MEAS, measure | MODE_SLEEP);
    registers.write(REG_CONFIG, (standby << 5) | (filter << 2));
    if (next.mode === "normal") registers.write(REG_CTRL_MEAS, measure | MODE_NORMAL);
    Object.assign(this.#configuration, next);
  }

  /** One burst read from press_msb on: the chip's shadowing keeps all values from one conversion. */
  readData(target: Uint8Array): void {
    this.registers.read(REG_PRESS_MSB, target);
  }

  /** Compensates the first six data bytes into result; returns t_fine for further compensation. */
  compensate(data: Uint8Array, result: Bmp280Sample): number {
    const adcP = ((data[0] as number) << 12) | ((data[1] as number) << 4) | ((data[2] as number) >> 4);
    const adcT = ((data[3] as number) << 12) | ((data[4] as number) << 4) | ((data[5] as number) >> 4);
    if (adcT === ADC_NO_DATA || adcP === ADC_NO_DATA)
      throw new Error(`${this.name}: no conversion available (sensor asleep or not yet measured)`);
    const tFine = compensateTemperature(this.calibration, adcT);
    result.temperature = temperatureFromFine(tFine);
    result.pressure = compensatePressure(this.calibration, adcP, tFine) / 256;
    return tFine;
  }

  close(): void {
    const registers = this.#registers;
    this.#registers = undefined;
    registers?.close();
  }

  #checkChipId(expected: number): void {
    const registers = this.registers;
    try {
      registers.read(REG_ID, this.#id);
    } catch (error) {
      throw new Error(`${this.name}: no response at ${registers.where} (${errorMessage(error)})`);
    }
    const id = this.#id[0] as number;
    if (id !== expected) throw new Error(`${this.name}: unexpected chip id ${hex(id)} (expected ${hex(expected)})`);
  }

  #readCalibration(): void {
    const bytes = new Uint8Array(CALIBRATION_LENGTH);
    this.registers.read(REG_CALIBRATION, bytes);
    const view = new DataView(bytes.buffer);
    const cal = this.calibration;
    cal.T1 = view.getUint16(0, true);
    cal.T2 = view.getInt16(2, true);
    cal.T3 = view.getInt16(4, true);
    cal.P1 = view.getUint16(6, true);
    cal.P2 = view.getInt16(8, true);
    cal.P3 = view.getInt16(10, true);
    cal.P4 = view.getInt16(12, true);
    cal.P5 = view.getInt16(14, true);
    cal.P6 = view.getInt16(16, true);
    cal.P7 = view.getInt16(18, true);
    cal.P8 = view.getInt16(20, true);
    cal.P9 = view.getInt16(22, true);
    if (cal.T1 === 0 || cal.P1 === 0) throw new Error(`${this.name}: calibration data invalid (dig_T1 or dig_P1 is 0)`);
  }
}

export default class BMP280 {
  readonly #core: Bmp280Core;
  readonly #data = new Uint8Array(DATA_LENGTH);

  /** I2C options ({ io, data, clock, address }) or SPI options ({ io, in, out, clock, select }). */
  constructor(options: { sensor: Bmp280SensorOptions }) {
    this.#core = new Bmp280Core(openBoschRegisters(options.sensor), "bmp280", BMP280_CHIP_ID);
    try {
      this.#core.configure(DEFAULT_CONFIGURATION);
    } catch (error) {
      this.close();
      throw error;
    }
  }

  configure(options: Bmp280Configuration): void {
    this.#core.configure(options);
  }

  /** Fills target when given, so a caller can reuse one object. */
  sample(target?: Bmp280Sample): Bmp280Sample {
    const core = this.#core;
    core.readData(this.#data);
    const result = target ?? { temperature: 0, pressure: 0 };
    core.compensate(this.#data, result);
    return result;
  }

  close(): void {
    this.#core.close();
  }
}
