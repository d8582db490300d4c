// ECMA-419 SPI as Moddable implements it (modules/io/spi): the subset the firmware uses, kept a strict
// subset of the SDK's typings/embedded_io/spi.d.ts. On the ESP32, select stays asserted from the first
// transfer until flush(true).

declare module "embedded:io/spi" {
  // biome-ignore lint/complexity/noUselessEmptyExport: without it every declaration in the block is importable; the SDK exports only the class.
  export {};

  class SPI {
    constructor(options: {
      in?: number;
      out?: number;
      clock: number;
      select?: number;
      hz: number;
      mode?: number;
      port?: number;
    });
    read(buffer: Uint8Array): void;
    write(buffer: Uint8Array): void;
    transfer(buffer: Uint8Array): void;
    flush(deselect?: boolean): void;
  }

  export default SPI;
}
