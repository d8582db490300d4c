// What the Sensirion SHT3x and SHT4x drivers share: the CRC-8 that guards every 16-bit word the chips
// send (polynomial 0x31, init 0xFF, no reflection, no final XOR) and the command / polled-read cycle.

import Timer from "timer";

/** The I2C IO class a Sensirion driver opens its device with (`embedded:io/i2c` on the device). */
export interface SensirionIo {
  read(buffer: Uint8Array, stop?: boolean): unknown;
  write(buffer: Uint8Array, stop?: boolean): void;
  close?(): void;
}

export type SensirionIoClass = new (options: {
  data: number;
  clock: number;
  hz: number;
  address: number;
  port?: number;
}) => SensirionIo;

export interface SensirionSensorOptions {
  io: SensirionIoClass;
  data: number;
  clock: number;
  address?: number;
  hz?: number;
  port?: number;
}

export interface HumiditySample {
  /** °C */
  temperature: number;
  /** %RH */
  humidity: number;
}

const DEFAULT_HZ = 100_000;

/** CRC-8 of length bytes from offset, as the chips compute it over each 16-bit word. */
export function sensirionCrc8(bytes: Uint8Array, offset = 0, length = 2): number {
  let crc = 0xff;
  for (let i = offset; i < offset + length; i++) {
    crc ^= bytes[i] as number;
    for (let bit = 0; bit < 8; bit++) crc = crc & 0x80 ? ((crc << 1) ^ 0x31) & 0xff : (crc << 1) & 0xff;
  }
  return crc;
}

export function hex(value: number, digits = 2): string {
  return `0x${value.toString(16).padStart(digits, "0")}`;
}

function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/**
 * One Sensirion chip on I2C: sends commands and reads CRC-checked words. A chip busy measuring NACKs
 * its address, so a read is retried every millisecond until the measurement's timeout.
 */
export class SensirionDevice {
  readonly chip: string;
  readonly address: number;
  #io: SensirionIo | undefined;
  readonly #command: Uint8Array;
  readonly #frame = new Uint8Array(6);

  constructor(chip: string, commandBytes: 1 | 2, options: SensirionSensorOptions, defaultAddress: number) {
    const { io: IO, data, clock, address = defaultAddress, hz = DEFAULT_HZ, port } = options;
    this.chip = chip;
    this.address = address;
    this.#command = new Uint8Array(commandBytes);
    this.#io = port === undefined ? new IO({ data, clock, hz, address }) : new IO({ data, clock, hz, address, port });
  }

  command(code: number): void {
    const io = this.#io;
    if (!io) throw new Error(`${this.chip}: closed`);
    const bytes = this.#command;
    if (bytes.length === 2) {
      bytes[0] = code >> 8;
      bytes[1] = code & 0xff;
    } else bytes[0] = code;
    try {
      io.write(bytes);
    } catch (error) {
      throw new Error(`${this.chip}: command ${hex(code, bytes.length * 2)} failed (${errorMessage(error)})`);
    }
  }

  /**
   * Waits waitMs, then reads words 16-bit words (1 or 2) into target, each checked against its CRC.
   * A word whose CRC does not match throws: a corrupted reading never becomes a value.
   */
  readWords(words: 1 | 2, waitMs: number, timeoutMs: number, target: Uint16Array): void {
    const io = this.#io;
    if (!io) throw new Error(`${this.chip}: closed`);
    const frame = words === 2 ? this.#frame : this.#frame.subarray(0, 3);
    if (waitMs > 0) Timer.delay(waitMs);
    for (let waited = waitMs; ; waited++) {
      try {
        io.read(frame);
        break;
      } catch (error) {
        if (waited >= timeoutMs)
          throw new Error(`${this.chip}: no data within ${timeoutMs} ms (${errorMessage(error)})`);
      }
      Timer.delay(1);
    }
    for (let word = 0; word < words; word++) {
      const offset = word * 3;
      if (sensirionCrc8(frame, offset, 2) !== frame[offset + 2])
        throw new Error(`${this.chip}: CRC mismatch in word ${word}`);
      target[word] = ((frame[offset] as number) << 8) | (frame[offset + 1] as number);
    }
  }

  close(): void {
    const io = this.#io;
    this.#io = undefined;
    io?.close?.();
  }
}

/** The serial number a chip sends as two CRC-checked words, most significant first. */
export function serialFromWords(words: Uint16Array): number {
  return (words[0] as number) * 65536 + (words[1] as number);
}
