// Moddable's `flash` module (modules/files/flash): raw access to a data partition. Erase works on
// whole sectors (blockSize bytes, set to 0xFF); writes can only clear bits. A strict subset of the
// SDK's typings/flash.d.ts (its read may also return a HostBuffer, which the firmware never asks for).

declare module "flash" {
  class Flash {
    /** Opens the data partition with this name (partitions.csv). */
    constructor(partition: string);
    erase(sector: number): void;
    read(offset: number, byteLength: number): ArrayBuffer;
    write(offset: number, byteLength: number, buffer: ByteBuffer): void;
    readonly byteLength: number;
    readonly blockSize: number;
  }

  export { Flash as default };
}
