// Simulated ECMA-419 `embedded:io/i2c`: each transaction is a synchronous call into the Node parent's
// simulated bus, with the ESP32 implementation's argument checks and error messages.

import type I2CDeclaration from "embedded:io/i2c";
import host from "kestrel-sim:host";

function bytesOf(buffer: ByteBuffer): Uint8Array {
  if (ArrayBuffer.isView(buffer)) return new Uint8Array(buffer.buffer, buffer.byteOffset, buffer.byteLength);
  if (buffer instanceof ArrayBuffer) return new Uint8Array(buffer);
  throw new TypeError("invalid buffer");
}

type I2COptions = ConstructorParameters<typeof I2CDeclaration>[0];

function requireInteger(options: I2COptions, key: "data" | "clock" | "address" | "hz"): number {
  const value = options[key];
  if (value === undefined) throw new RangeError(`${key} required`);
  if (!Number.isInteger(value)) throw new RangeError(`invalid ${key}`);
  return value;
}

export default class I2C {
  #handle: number | undefined;

  constructor(options: I2COptions) {
    const data = requireInteger(options, "data");
    const clock = requireInteger(options, "clock");
    const address = requireInteger(options, "address");
    const hz = requireInteger(options, "hz");
    if (address < 0 || address > 0x7f) throw new RangeError("invalid address");
    if (hz <= 0) throw new RangeError("invalid hz");
    if (options.format !== undefined && options.format !== "buffer") throw new RangeError("invalid format");
    const port = options.port;
    this.#handle = host.call("i2c.open", { data, clock, address, hz, port }) as number;
  }

  get format(): "buffer" {
    return "buffer";
  }

  set format(value: "buffer") {
    if (value !== "buffer") throw new RangeError("invalid format");
  }

  read(byteLength: number, stop?: boolean): ArrayBuffer;
  read(buffer: ByteBuffer, stop?: boolean): number;
  read(target: number | ByteBuffer, stop = true): ArrayBuffer | number {
    const handle = this.#open();
    const into = typeof target === "number" ? new Uint8Array(target) : bytesOf(target);
    const bytes = host.call("i2c.read", { handle, length: into.length, stop: Boolean(stop) }) as number[];
    into.set(bytes);
    return typeof target === "number" ? (into.buffer as ArrayBuffer) : into.length;
  }

  /** As on the ESP32, a zero-length write is a probe: 1 when nothing acknowledges, no exception. */
  write(buffer: ByteBuffer, stop = true): number | undefined {
    const handle = this.#open();
    const bytes = Array.from(bytesOf(buffer));
    if (bytes.length === 0) {
      try {
        host.call("i2c.write", { handle, bytes, stop: Boolean(stop) });
      } catch {
        return 1;
      }
      return undefined;
    }
    host.call("i2c.write", { handle, bytes, stop: Boolean(stop) });
    return undefined;
  }

  close(): void {
    const handle = this.#handle;
    if (handle === undefined) return;
    this.#handle = undefined;
    host.call("i2c.close", { handle });
  }

  #open(): number {
    if (this.#handle === undefined) throw new Error("closed");
    return this.#handle;
  }
}
