// Pieces of the WebAssembly binary format for tests that make or alter modules by hand: unsigned
// LEB128 numbers, and custom sections, which change a module's bytes (its SHA-256, its size) and
// not what it does.

export function leb128(value: number): number[] {
  const out: number[] = [];
  let rest = value;
  do {
    const byte = rest & 0x7f;
    rest >>>= 7;
    out.push(rest ? byte | 0x80 : byte);
  } while (rest);
  return out;
}

/** The module with a custom section `name` appended, holding `payloadBytes` zero bytes. */
export function withCustomSection(module: Uint8Array, name: string, payloadBytes = 0): Buffer<ArrayBuffer> {
  const title = Buffer.from(name);
  const body = Buffer.concat([Buffer.from(leb128(title.length)), title, Buffer.alloc(payloadBytes)]);
  return Buffer.concat([module, Buffer.from([0, ...leb128(body.length)]), body]);
}
