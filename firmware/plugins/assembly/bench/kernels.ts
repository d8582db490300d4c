// Benchmark module (npm run bench:plugins -w firmware): the same .wasm runs in wasm3 on the
// simulated device and in V8. A 4 KiB buffer filled by a fixed LCG, a bitwise CRC-32 over it (no
// table: pure compute), an empty export and a loop of host calls for the call overheads.

import { now } from "../sdk/kestrel";

const SIZE = 4096;
const buffer = new StaticArray<u8>(SIZE);

export function init(): i32 {
  let x: u32 = 1;
  for (let i = 0; i < SIZE; i++) {
    x = x * 1103515245 + 12345;
    unchecked((buffer[i] = <u8>(x >>> 16)));
  }
  return 0;
}

export function on_sample(): void {}

export function empty(): void {}

/** n calls of the host's now(): the wasm → host import overhead. */
export function host_calls(n: i32): f64 {
  let sum: f64 = 0;
  for (let i = 0; i < n; i++) sum += now();
  return sum;
}

/** CRC-32 (IEEE, reflected, as zlib) of the buffer, bit by bit. */
export function crc32(): u32 {
  let crc: u32 = 0xffffffff;
  for (let i = 0; i < SIZE; i++) {
    crc ^= unchecked(buffer[i]);
    for (let k = 0; k < 8; k++) crc = (crc >>> 1) ^ (0xedb88320 & (0 - (crc & 1)));
  }
  return ~crc;
}
