// Register-level model of a Bosch BMP280 on the simulated I2C bus. It follows a smooth, seeded
// indoor-weather trajectory, inverts the datasheet's compensation to produce raw 20-bit ADC values,
// and records every conversion it serves together with what the datasheet's floating-point formula
// (section 8.1) makes of it: an implementation independent of the firmware driver's integer path.

import type { I2cTarget } from "./i2c-bus.ts";

/** Trimming words dig_T1..dig_P9 (T1, P1 unsigned 16-bit; the others signed 16-bit). */
export interface Bmp280Trimming {
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

/** The datasheet's example trimming (section 3.12). */
export const DATASHEET_TRIMMING: Readonly<Bmp280Trimming> = Object.freeze({
  T1: 27504,
  T2: 26435,
  T3: -1000,
  P1: 36477,
  P2: -10685,
  P3: 3024,
  P4: 2855,
  P5: 140,
  P6: -7,
  P7: 15500,
  P8: -14600,
  P9: 6000,
});

/** One conversion the model served: the raw ADC values and the float formula's reading of them. */
export interface Bmp280Conversion {
  adcT: number;
  adcP: number;
  /** °C */
  temperature: number;
  /** Pa */
  pressure: number;
}

export interface Bmp280Environment {
  /** °C */
  temperature: number;
  /** Pa */
  pressure: number;
}

export interface Bmp280ModelOptions {
  /** Makes the trajectory and noise distinct per device and reproducible. */
  seed?: number;
  /** 0x58 for a BMP280; a BME280 answers 0x60. */
  chipId?: number;
  trimming?: Partial<Bmp280Trimming>;
  /** Clock of the trajectory, epoch milliseconds. */
  now?: () => number;
}

export const REG_TRIMMING = 0x88;
export const REG_ID = 0xd0;
export const REG_RESET = 0xe0;
export const REG_STATUS = 0xf3;
export const REG_CTRL_MEAS = 0xf4;
export const REG_CONFIG = 0xf5;
export const REG_PRESS_MSB = 0xf7;
export const REG_TEMP_XLSB = 0xfc;

const RESET_COMMAND = 0xb6;
const ADC_MAX = 0xfffff;
/** The data registers' reset value, also what a skipped measurement reads. */
const ADC_NO_DATA = 0x80000;
const WORD_ORDER: readonly (keyof Bmp280Trimming)[] = [
  "T1",
  "T2",
  "T3",
  "P1",
  "P2",
  "P3",
  "P4",
  "P5",
  "P6",
  "P7",
  "P8",
  "P9",
];

/** The datasheet's floating-point compensation (section 8.1), t_fine truncated to 32 bits as there. */
export function compensateFloat(trim: Bmp280Trimming, adcT: number, adcP: number): Bmp280Conversion {
  let var1 = (adcT / 16384 - trim.T1 / 1024) * trim.T2;
  let var2 = (adcT / 131072 - trim.T1 / 8192) * (adcT / 131072 - trim.T1 / 8192) * trim.T3;
  const tFine = Math.trunc(var1 + var2);
  const temperature = (var1 + var2) / 5120;
  var1 = tFine / 2 - 64000;
  var2 = (var1 * var1 * trim.P6) / 32768;
  var2 = var2 + var1 * trim.P5 * 2;
  var2 = var2 / 4 + trim.P4 * 65536;
  var1 = ((trim.P3 * var1 * var1) / 524288 + trim.P2 * var1) / 524288;
  var1 = (1 + var1 / 32768) * trim.P1;
  if (var1 === 0) return { adcT, adcP, temperature, pressure: 0 };
  let p = 1048576 - adcP;
  p = ((p - var2 / 4096) * 6250) / var1;
  var1 = (trim.P9 * p * p) / 2147483648;
  var2 = (p * trim.P8) / 32768;
  return { adcT, adcP, temperature, pressure: p + (var1 + var2 + trim.P7) / 16 };
}

/** Smallest-error integer in [1, ADC_MAX] for a monotonic f, skipping the no-data marker. */
function invert(f: (adc: number) => number, target: number): number {
  const increasing = f(ADC_MAX) > f(1);
  let lo = 1;
  let hi = ADC_MAX;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (increasing ? f(mid) < target : f(mid) > target) lo = mid + 1;
    else hi = mid;
  }
  const best = lo > 1 && Math.abs(f(lo - 1) - target) <= Math.abs(f(lo) - target) ? lo - 1 : lo;
  return best === ADC_NO_DATA ? ADC_NO_DATA + 1 : best;
}

/** value, moved by one LSB (away from the no-data marker) when it equals previous. */
function differFrom(previous: number | undefined, value: number): number {
  if (value !== previous) return value;
  const step = value < ADC_MAX ? 1 : -1;
  return value + step === ADC_NO_DATA ? value + 2 * step : value + step;
}

/** mulberry32: small, fast, good enough for simulated weather. */
function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

interface Wave {
  amplitude: number;
  periodMs: number;
  phase: number;
}

function waveAt(wave: Wave, ms: number): number {
  return wave.amplitude * Math.sin((2 * Math.PI * ms) / wave.periodMs + wave.phase);
}

export class Bmp280Model implements I2cTarget {
  /** Every conversion served, in order: one per burst read of the data registers. */
  readonly served: Bmp280Conversion[] = [];
  readonly trimming: Readonly<Bmp280Trimming>;
  readonly chipId: number;
  readonly #now: () => number;
  readonly #random: () => number;
  readonly #registers = new Uint8Array(256);
  readonly #temperatureBase: number;
  readonly #temperatureWaves: readonly Wave[];
  readonly #pressureBase: number;
  readonly #pressureWaves: readonly Wave[];
  #pointer = 0;
  #powered = true;
  #forcedPending = false;
  #fixedRaw: { adcT: number; adcP: number } | undefined;

  constructor(options: Bmp280ModelOptions = {}) {
    this.trimming = Object.freeze({ ...DATASHEET_TRIMMING, ...options.trimming });
    this.chipId = options.chipId ?? 0x58;
    this.#now = options.now ?? Date.now;
    const random = seededRandom(options.seed ?? 1);
    this.#random = random;
    const wave = (amplitude: number, minPeriodMs: number, maxPeriodMs: number): Wave => ({
      amplitude,
      periodMs: minPeriodMs + random() * (maxPeriodMs - minPeriodMs),
      phase: random() * 2 * Math.PI,
    });
    // 21..24 °C and 1005..1015 hPa: base ± the sum of the amplitudes stays inside both ranges.
    this.#temperatureBase = 22 + random();
    this.#temperatureWaves = [wave(0.4 + random() * 0.5, 600_000, 1_800_000), wave(0.08, 40_000, 90_000)];
    this.#pressureBase = 100_850 + random() * 300;
    this.#pressureWaves = [wave(200 + random() * 100, 1_200_000, 3_600_000), wave(15, 30_000, 90_000)];
    this.#writeTrimming();
    this.#reset();
  }

  /** The undisturbed trajectory at epoch ms (served values add a little sensor noise). */
  environmentAt(ms: number): Bmp280Environment {
    let temperature = this.#temperatureBase;
    for (const wave of this.#temperatureWaves) temperature += waveAt(wave, ms);
    let pressure = this.#pressureBase;
    for (const wave of this.#pressureWaves) pressure += waveAt(wave, ms);
    return { temperature, pressure };
  }

  /** Serve exactly these raw values from now on (for the datasheet's worked example). */
  serveRaw(adcT: number, adcP: number): void {
    for (const value of [adcT, adcP])
      if (!Number.isInteger(value) || value < 0 || value > ADC_MAX)
        throw new RangeError(`raw value ${value} is not 20-bit`);
    this.#fixedRaw = { adcT, adcP };
  }

  /** Back to the trajectory. */
  followEnvironment(): void {
    this.#fixedRaw = undefined;
  }

  /** Whether the chip answers on the bus. */
  get present(): boolean {
    return this.#powered;
  }

  /** Cuts or restores the chip's supply; it comes back in its power-on state (sleep mode). */
  setPowered(on: boolean): void {
    if (on && !this.#powered) this.#reset();
    this.#powered = on;
  }

  get mode(): "sleep" | "forced" | "normal" {
    const bits = (this.#registers[REG_CTRL_MEAS] as number) & 0b11;
    return bits === 0b11 ? "normal" : bits === 0 ? "sleep" : "forced";
  }

  write(bytes: Uint8Array): void {
    if (bytes.length === 0) return;
    // I2C writes are (register, value) pairs without auto-increment (datasheet 5.2.1).
    let i = 0;
    for (; i + 1 < bytes.length; i += 2) this.#writeRegister(bytes[i] as number, bytes[i + 1] as number);
    this.#pointer = i < bytes.length ? (bytes[i] as number) : (bytes[i - 2] as number);
  }

  read(length: number): Uint8Array {
    if (this.#pointer >= REG_PRESS_MSB && this.#pointer <= REG_TEMP_XLSB) this.#convert();
    const out = new Uint8Array(length);
    for (let i = 0; i < length; i++) {
      out[i] = this.#registers[this.#pointer] as number;
      this.#pointer = (this.#pointer + 1) & 0xff;
    }
    return out;
  }

  #writeRegister(register: number, value: number): void {
    switch (register) {
      case REG_RESET:
        if (value === RESET_COMMAND) this.#reset();
        break;
      case REG_CTRL_MEAS:
        this.#registers[REG_CTRL_MEAS] = value;
        this.#forcedPending = (value & 0b11) === 0b01 || (value & 0b11) === 0b10;
        break;
      case REG_CONFIG:
        this.#registers[REG_CONFIG] = value & 0b1111_1101;
        break;
      default:
        break; // read-only or reserved: ignored like the chip does
    }
  }

  #writeTrimming(): void {
    const view = new DataView(this.#registers.buffer);
    WORD_ORDER.forEach((name, index) => {
      const word = this.trimming[name];
      const unsigned = name === "T1" || name === "P1";
      if (!Number.isInteger(word) || word < (unsigned ? 0 : -32768) || word > (unsigned ? 65535 : 32767))
        throw new RangeError(`trimming ${name} = ${word} is not a ${unsigned ? "u" : ""}int16`);
      if (unsigned) view.setUint16(REG_TRIMMING + index * 2, word, true);
      else view.setInt16(REG_TRIMMING + index * 2, word, true);
    });
    this.#registers[REG_ID] = this.chipId;
  }

  #reset(): void {
    this.#registers[REG_CTRL_MEAS] = 0;
    this.#registers[REG_CONFIG] = 0;
    this.#registers[REG_STATUS] = 0;
    this.#forcedPending = false;
    this.#setData(ADC_NO_DATA, ADC_NO_DATA);
  }

  /** Latches a new conversion into the data registers when the mode calls for one. */
  #convert(): void {
    const mode = this.mode;
    if (mode === "sleep") return;
    if (mode === "forced") {
      if (!this.#forcedPending) return;
      this.#forcedPending = false;
      this.#registers[REG_CTRL_MEAS] = (this.#registers[REG_CTRL_MEAS] as number) & ~0b11;
    }
    const ctrl = this.#registers[REG_CTRL_MEAS] as number;
    let { adcT, adcP } = this.#fixedRaw ?? this.#rawFromEnvironment();
    if (ctrl >> 5 === 0) adcT = ADC_NO_DATA;
    if (((ctrl >> 2) & 0b111) === 0) adcP = ADC_NO_DATA;
    this.#setData(adcT, adcP);
    this.served.push(compensateFloat(this.trimming, adcT, adcP));
  }

  #rawFromEnvironment(): { adcT: number; adcP: number } {
    const environment = this.environmentAt(this.#now());
    const temperature = environment.temperature + (this.#random() - 0.5) * 0.006;
    const pressure = environment.pressure + (this.#random() - 0.5) * 2;
    const trim = this.trimming;
    // Two reads must never serve the same raw values, so a test can tell every sample apart.
    const last = this.served.at(-1);
    const adcT = differFrom(
      last?.adcT,
      invert((adc) => compensateFloat(trim, adc, ADC_NO_DATA).temperature, temperature),
    );
    const adcP = differFrom(
      last?.adcP,
      invert((adc) => compensateFloat(trim, adcT, adc).pressure, pressure),
    );
    return { adcT, adcP };
  }

  #setData(adcT: number, adcP: number): void {
    const r = this.#registers;
    r[REG_PRESS_MSB] = adcP >> 12;
    r[REG_PRESS_MSB + 1] = (adcP >> 4) & 0xff;
    r[REG_PRESS_MSB + 2] = (adcP & 0xf) << 4;
    r[REG_PRESS_MSB + 3] = adcT >> 12;
    r[REG_PRESS_MSB + 4] = (adcT >> 4) & 0xff;
    r[REG_PRESS_MSB + 5] = (adcT & 0xf) << 4;
  }
}
