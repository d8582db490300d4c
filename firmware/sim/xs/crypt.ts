// Simulated Moddable `crypt` module (modules/crypt/digest/crypt.js): the same exports. Digest hashes
// in the Node parent (node:crypto); the ciphers are not simulated (the firmware uses none), so
// constructing one fails loudly rather than pretending.

import host from "kestrel-sim:host";

function data(message: string | ArrayBuffer | ArrayBufferView): unknown {
  if (typeof message === "string") return message;
  if (message instanceof ArrayBuffer) return Array.from(new Uint8Array(message));
  if (ArrayBuffer.isView(message))
    return Array.from(new Uint8Array(message.buffer, message.byteOffset, message.byteLength));
  throw new TypeError("message must be a string or a buffer");
}

const SIZES: Readonly<Record<string, { block: number; output: number }>> = Object.freeze({
  MD5: { block: 64, output: 16 },
  SHA1: { block: 64, output: 20 },
  SHA224: { block: 64, output: 28 },
  SHA256: { block: 64, output: 32 },
  SHA384: { block: 128, output: 48 },
  SHA512: { block: 128, output: 64 },
});

export class Digest {
  readonly #id: number;
  readonly #type: string;

  constructor(type: string) {
    this.#type = String(type);
    this.#id = host.call("crypto.digest.create", { type: this.#type }) as number;
  }

  write(message: string | ArrayBuffer): void {
    host.call("crypto.digest.write", { id: this.#id, data: data(message) });
  }

  close(): ArrayBuffer {
    return Uint8Array.from(host.call("crypto.digest.close", { id: this.#id }) as number[]).buffer;
  }

  reset(): void {
    host.call("crypto.digest.reset", { id: this.#id });
  }

  get blockSize(): number {
    return SIZES[this.#type]?.block ?? 0;
  }

  get outputSize(): number {
    return SIZES[this.#type]?.output ?? 0;
  }

  process(...messages: Array<string | ArrayBuffer>): ArrayBuffer {
    this.reset();
    for (const message of messages) this.write(message);
    return this.close();
  }

  update(message: string | ArrayBuffer): void {
    this.write(message);
  }
}

function notSimulated(name: string): never {
  throw new Error(`${name} is not simulated`);
}

/** The parent knows no GHASH digest: constructing one fails there. */
export class GHASH extends Digest {
  constructor() {
    super("GHASH");
  }
}

export class BlockCipher {
  constructor() {
    notSimulated("BlockCipher");
  }
}

export class StreamCipher {
  constructor() {
    notSimulated("StreamCipher");
  }
}

export class Mode {
  constructor() {
    notSimulated("Mode");
  }
}

export default Object.freeze({ Digest, BlockCipher, Mode, StreamCipher, GHASH });
