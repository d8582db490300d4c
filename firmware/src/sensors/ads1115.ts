// Texas Instruments ADS1115 16-bit ADC on I2C, ECMA-419 sensor class pattern: input multiplexer, PGA
// full-scale ranges, data rates, single-shot conversions (start with OS, poll OS until done) and
// continuous mode (SBAS444, section 9.6). The sample path allocates nothing.

import Timer from "timer";

export interface Ads1115Io {
  read(buffer: Uint8Array, stop?: boolean): unknown;
  write(buffer: Uint8Array, stop?: boolean): void;
  close?(): void;
}

export type Ads1115IoClass = new (options: {
  data: number;
  clock: number;
  hz: number;
  address: number;
  port?: number;
}) => Ads1115Io;

export interface Ads1115SensorOptions {
  io: Ads1115IoClass;
  data: number;
  clock: number;
  /** 0x48 (ADDR to GND), 0x49 (VDD), 0x4A (SDA), 0x4B (SCL). */
  address?: number;
  hz?: number;
  port?: number;
}

/** Single-ended inputs against GND, or the four differential pairs the multiplexer offers. */
export type Ads1115Input = "ain0" | "ain1" | "ain2" | "ain3" | "ain0-ain1" | "ain0-ain3" | "ain1-ain3" | "ain2-ain3";
/** Full-scale range of the PGA, volts. */
export type Ads1115Range = 6.144 | 4.096 | 2.048 | 1.024 | 0.512 | 0.256;
/** Samples per second. */
export type Ads1115Rate = 8 | 16 | 32 | 64 | 128 | 250 | 475 | 860;

export interface Ads1115Configuration {
  input?: Ads1115Input;
  range?: Ads1115Range;
  rate?: Ads1115Rate;
  mode?: "single" | "continuous";
}

export interface Ads1115Sample {
  /** Volts at the selected input. */
  voltage: number;
  /** The signed 16-bit conversion result. */
  raw: number;
}

export const ADS1115_DEFAULT_ADDRESS = 0x48;

const REG_CONVERSION = 0x00;
const REG_CONFIG = 0x01;
const OS = 0x8000;
const MODE_SINGLE = 0x0100;
/** Comparator disabled (COMP_QUE = 11), its reset value. */
const COMPARATOR_OFF = 0x0003;
const DEFAULT_HZ = 400_000;
/** The internal oscillator may run 10 % slow (datasheet 7.5); poll a little past it before giving up. */
const TIMEOUT_MARGIN_MS = 10;

const MUX: Readonly<Record<Ads1115Input, number>> = Object.freeze({
  "ain0-ain1": 0,
  "ain0-ain3": 1,
  "ain1-ain3": 2,
  "ain2-ain3": 3,
  ain0: 4,
  ain1: 5,
  ain2: 6,
  ain3: 7,
});
const PGA: Readonly<Record<number, number>> = Object.freeze({
  6.144: 0,
  4.096: 1,
  2.048: 2,
  1.024: 3,
  0.512: 4,
  0.256: 5,
});
const RATE: Readonly<Record<number, number>> = Object.freeze({
  8: 0,
  16: 1,
  32: 2,
  64: 3,
  128: 4,
  250: 5,
  475: 6,
  860: 7,
});

function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

function choice(table: Readonly<Record<string | number, number>>, name: string, value: string | number): number {
  const encoded = table[value];
  if (encoded === undefined)
    throw new RangeError(`ads1115: invalid ${name} ${value} (expected one of ${Object.keys(table).join(", ")})`);
  return encoded;
}

/** Volts for a conversion result at a full-scale range: one LSB is FSR / 2^15. */
export function ads1115Volts(raw: number, range: number): number {
  return (raw * range) / 32768;
}

export default class ADS1115 {
  #io: Ads1115Io | undefined;
  readonly #pointer = new Uint8Array(1);
  readonly #word = new Uint8Array(2);
  readonly #triple = new Uint8Array(3);
  readonly #configuration: Required<Ads1115Configuration> = {
    input: "ain0",
    range: 4.096,
    rate: 128,
    mode: "single",
  };
  #config = 0;
  #conversionMs = 0;
  /** Whether continuous mode has had time for its first conversion since configure. */
  #continuousReady = false;

  constructor(options: { sensor: Ads1115SensorOptions }) {
    const { io: IO, data, clock, address = ADS1115_DEFAULT_ADDRESS, hz = DEFAULT_HZ, port } = options.sensor;
    this.#io = port === undefined ? new IO({ data, clock, hz, address }) : new IO({ data, clock, hz, address, port });
    try {
      this.readRegister(REG_CONFIG);
    } catch (error) {
      this.close();
      throw new Error(`ads1115: no response at I2C address 0x${address.toString(16)} (${errorMessage(error)})`);
    }
    try {
      this.configure({});
    } catch (error) {
      this.close();
      throw error;
    }
  }

  configure(options: Ads1115Configuration): void {
    const next = { ...this.#configuration, ...options };
    const mux = choice(MUX, "input", next.input);
    const pga = choice(PGA, "range", next.range);
    const rate = choice(RATE, "rate", next.rate);
    if (next.mode !== "single" && next.mode !== "continuous")
      throw new RangeError(`ads1115: invalid mode ${String(next.mode)} (expected single or continuous)`);
    this.#config = (mux << 12) | (pga << 9) | (next.mode === "single" ? MODE_SINGLE : 0) | (rate << 5) | COMPARATOR_OFF;
    this.#conversionMs = Math.ceil(1000 / next.rate);
    Object.assign(this.#configuration, next);
    // Continuous mode starts converting as soon as the config is written; single-shot waits for OS.
    this.#writeRegister(REG_CONFIG, this.#config);
    this.#continuousReady = false;
  }

  /** A register as the chip holds it (config 0x8583 after power-up). */
  readRegister(register: number): number {
    const io = this.#open();
    this.#pointer[0] = register;
    io.write(this.#pointer);
    io.read(this.#word);
    return ((this.#word[0] as number) << 8) | (this.#word[1] as number);
  }

  /** Single-shot: starts a conversion and polls OS until it is done; continuous: the latest result. */
  sample(target?: Ads1115Sample): Ads1115Sample {
    const conversionMs = this.#conversionMs;
    if (this.#configuration.mode === "single") {
      this.#writeRegister(REG_CONFIG, this.#config | OS);
      Timer.delay(conversionMs);
      for (let waited = conversionMs; (this.readRegister(REG_CONFIG) & OS) === 0; waited++) {
        if (waited >= conversionMs + TIMEOUT_MARGIN_MS)
          throw new Error(`ads1115: conversion not done within ${waited} ms`);
        Timer.delay(1);
      }
    } else if (!this.#continuousReady) {
      Timer.delay(conversionMs);
      this.#continuousReady = true;
    }
    const word = this.readRegister(REG_CONVERSION);
    const raw = (word << 16) >> 16;
    const result = target ?? { voltage: 0, raw: 0 };
    result.raw = raw;
    result.voltage = ads1115Volts(raw, this.#configuration.range);
    return result;
  }

  close(): void {
    const io = this.#io;
    if (!io) return;
    this.#io = undefined;
    try {
      // Back to power-down single-shot, so a continuous chip stops drawing 150 uA.
      this.#triple[0] = REG_CONFIG;
      this.#triple[1] = (this.#config | MODE_SINGLE) >> 8;
      this.#triple[2] = (this.#config | MODE_SINGLE) & 0xff;
      io.write(this.#triple);
    } catch {
      // The chip is gone or the bus is stuck: nothing left to power down.
    }
    io.close?.();
  }

  #writeRegister(register: number, value: number): void {
    const triple = this.#triple;
    triple[0] = register;
    triple[1] = value >> 8;
    triple[2] = value & 0xff;
    this.#open().write(triple);
  }

  #open(): Ads1115Io {
    if (!this.#io) throw new Error("ads1115: closed");
    return this.#io;
  }
}
