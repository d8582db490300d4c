// Simulated Moddable `flash` module: the partition lives in the Node parent's flash model (a file
// in the device's state directory), with NOR semantics enforced there.

import host from "kestrel-sim:host";

export default class Flash {
  readonly #partition: string;
  readonly byteLength: number;
  readonly blockSize: number;

  constructor(partition: string) {
    const info = host.call("flash.open", { partition: String(partition) }) as { byteLength: number; blockSize: number };
    this.#partition = String(partition);
    this.byteLength = info.byteLength;
    this.blockSize = info.blockSize;
  }

  erase(sector: number): void {
    host.call("flash.erase", { partition: this.#partition, sector });
  }

  read(offset: number, byteLength: number): ArrayBuffer {
    const bytes = host.call("flash.read", { partition: this.#partition, offset, byteLength }) as number[];
    return Uint8Array.from(bytes).buffer;
  }

  write(offset: number, byteLength: number, buffer: ArrayBufferLike | ArrayBufferView): void {
    const view = ArrayBuffer.isView(buffer)
      ? new Uint8Array(buffer.buffer, buffer.byteOffset, buffer.byteLength)
      : new Uint8Array(buffer);
    if (byteLength <= 0 || view.byteLength < byteLength) throw new Error("invalid");
    host.call("flash.write", { partition: this.#partition, offset, bytes: Array.from(view.subarray(0, byteLength)) });
  }
}
