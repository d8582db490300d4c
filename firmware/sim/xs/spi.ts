// Simulated ECMA-419 `embedded:io/spi` with the ESP32 port's behaviour: select is asserted by the
// first transfer and held until flush(true); read(buffer) clocks out the buffer's bytes and replaces
// them with what the device sent.

import host from "kestrel-sim:host";

interface SpiOptions {
  in?: number;
  out?: number;
  clock: number;
  select?: number;
  hz: number;
  mode?: number;
  port?: number;
  format?: "buffer";
}

function bytesOf(buffer: ByteBuffer): Uint8Array {
  if (ArrayBuffer.isView(buffer)) return new Uint8Array(buffer.buffer, buffer.byteOffset, buffer.byteLength);
  if (buffer instanceof ArrayBuffer) return new Uint8Array(buffer);
  throw new TypeError("invalid buffer");
}

function pin(options: SpiOptions, key: "in" | "out" | "clock" | "select"): number {
  const value = options[key];
  if (value === undefined) throw new RangeError(`${key} required`);
  if (!Number.isInteger(value)) throw new RangeError(`invalid ${key}`);
  return value;
}

export default class SPI {
  #handle: number | undefined;

  constructor(options: SpiOptions) {
    const args = {
      in: pin(options, "in"),
      out: pin(options, "out"),
      clock: pin(options, "clock"),
      select: pin(options, "select"),
    };
    if (!Number.isInteger(options.hz) || options.hz <= 0) throw new RangeError("invalid hz");
    const mode = options.mode ?? 0;
    if (!Number.isInteger(mode) || mode < 0 || mode > 3) throw new RangeError("invalid mode");
    if (options.format !== undefined && options.format !== "buffer") throw new RangeError("invalid format");
    this.#handle = host.call("spi.open", { ...args, hz: options.hz, mode }) as number;
  }

  get format(): "buffer" {
    return "buffer";
  }

  set format(value: "buffer") {
    if (value !== "buffer") throw new RangeError("invalid format");
  }

  read(target: number | ByteBuffer): ArrayBuffer | undefined {
    const into = typeof target === "number" ? new Uint8Array(target) : bytesOf(target);
    this.#exchange(into);
    return typeof target === "number" ? (into.buffer as ArrayBuffer) : undefined;
  }

  write(buffer: ByteBuffer): void {
    this.#exchange(Uint8Array.from(bytesOf(buffer)));
  }

  transfer(buffer: ByteBuffer): void {
    this.#exchange(bytesOf(buffer));
  }

  flush(deselect?: boolean): void {
    const handle = this.#open();
    if (deselect) host.call("spi.deselect", { handle });
  }

  close(): void {
    const handle = this.#handle;
    if (handle === undefined) return;
    this.#handle = undefined;
    host.call("spi.close", { handle });
  }

  #exchange(bytes: Uint8Array): void {
    const handle = this.#open();
    bytes.set(host.call("spi.exchange", { handle, bytes: Array.from(bytes) }) as number[]);
  }

  #open(): number {
    if (this.#handle === undefined) throw new Error("closed");
    return this.#handle;
  }
}
