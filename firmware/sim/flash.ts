// The simulated board's SPI flash data partition, kept in a file so its content survives restarts
// and power loss (every write reaches the file before the call returns). NOR rules: erase sets a
// whole sector to 0xFF, a write can only clear bits (the stored byte becomes old AND new).

import { closeSync, existsSync, fstatSync, mkdirSync, openSync, readSync, writeFileSync, writeSync } from "node:fs";
import { dirname } from "node:path";
import type { HostPort } from "./xs-machine.ts";

export const FLASH_SECTOR_BYTES = 4096;

export class FlashPartition implements HostPort {
  readonly name: string;
  readonly file: string;
  readonly byteLength: number;
  readonly blockSize = FLASH_SECTOR_BYTES;
  readonly #fd: number;
  #closed = false;

  constructor(options: { name: string; file: string; byteLength: number }) {
    if (options.byteLength <= 0 || options.byteLength % FLASH_SECTOR_BYTES !== 0)
      throw new RangeError(`flash partition size must be a positive multiple of ${FLASH_SECTOR_BYTES}`);
    this.name = options.name;
    this.file = options.file;
    this.byteLength = options.byteLength;
    mkdirSync(dirname(options.file), { recursive: true });
    // A new chip reads erased.
    if (!existsSync(options.file)) writeFileSync(options.file, Buffer.alloc(this.byteLength, 0xff));
    this.#fd = openSync(options.file, "r+");
    if (fstatSync(this.#fd).size !== this.byteLength) {
      closeSync(this.#fd);
      throw new Error(`${options.file} does not hold a ${this.byteLength}-byte partition`);
    }
  }

  handle(op: string, args: Record<string, unknown>): unknown {
    if (args.partition !== this.name) throw new Error("can't find partition");
    switch (op) {
      case "open":
        return { byteLength: this.byteLength, blockSize: this.blockSize };
      case "erase": {
        const sector = Number(args.sector);
        if (!Number.isInteger(sector) || sector < 0 || (sector + 1) * this.blockSize > this.byteLength)
          throw new Error("erase failed");
        writeSync(this.#fd, Buffer.alloc(this.blockSize, 0xff), 0, this.blockSize, sector * this.blockSize);
        return undefined;
      }
      case "read": {
        const { offset, length } = this.#range(args.offset, args.byteLength, "read failed");
        return Array.from(this.#read(offset, length));
      }
      case "write": {
        const bytes = args.bytes;
        if (!Array.isArray(bytes)) throw new TypeError("bytes must be an array");
        const { offset, length } = this.#range(args.offset, bytes.length, "write failed");
        const stored = this.#read(offset, length);
        for (let i = 0; i < length; i++) stored[i] = (stored[i] as number) & (Number(bytes[i]) & 0xff);
        writeSync(this.#fd, stored, 0, length, offset);
        return undefined;
      }
      default:
        throw new Error(`unknown flash operation ${op}`);
    }
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    closeSync(this.#fd);
  }

  #read(offset: number, length: number): Buffer {
    const buffer = Buffer.alloc(length);
    readSync(this.#fd, buffer, 0, length, offset);
    return buffer;
  }

  #range(offset: unknown, length: unknown, error: string): { offset: number; length: number } {
    const start = Number(offset);
    const count = Number(length);
    if (
      !Number.isInteger(start) ||
      !Number.isInteger(count) ||
      start < 0 ||
      count <= 0 ||
      start + count > this.byteLength
    )
      throw new Error(error);
    return { offset: start, length: count };
  }
}
