// ECMA-419 I2C IO class as Moddable implements it on ESP32 (modules/io/i2c): synchronous
// read/write on one device address; errors are thrown ("read failed", "write failed").
// Kept a strict subset of the SDK's typings/embedded_io/i2c.d.ts, so code that passes our own tsc
// also passes the device build: no close() (the SDK typing lacks it although the runtime has it),
// no `timeout` option, and the `stop` flag is ignored by the ESP32 runtime (always STOP).

declare module "embedded:io/i2c" {
  // biome-ignore lint/complexity/noUselessEmptyExport: without it every declaration in the block is importable; the SDK exports only the class.
  export {};

  interface I2COptions {
    /** SDA pin number. */
    data: number;
    /** SCL pin number. */
    clock: number;
    /** Bus clock in hertz. */
    hz: number;
    /** 7-bit device address. */
    address: number;
    /** I2C controller; the platform picks one when omitted. */
    port?: number;
    format?: "buffer";
  }

  export default class I2C {
    constructor(options: I2COptions);
    get format(): "buffer";
    set format(value: "buffer");
    /** Reads byteLength bytes into a new ArrayBuffer. */
    read(byteLength: number, stop?: boolean): ArrayBuffer;
    /** Fills buffer; returns the number of bytes read. */
    read(buffer: ByteBuffer, stop?: boolean): number;
    write(buffer: ByteBuffer, stop?: boolean): void;
  }
}
