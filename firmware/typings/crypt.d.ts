// Moddable's `crypt` module (modules/crypt/digest/crypt.js). The firmware uses Digest, typed as the
// SDK's typings/crypt.d.ts types it; the other exports are declared so the names match the module
// (the ciphers are not used, and the simulator does not implement them).

declare module "crypt" {
  type DigestType = "MD5" | "SHA1" | "SHA224" | "SHA256" | "SHA384" | "SHA512";

  export class Digest {
    constructor(type: DigestType);
    write(message: string | ArrayBuffer): void;
    close(): ArrayBuffer;
    reset(): void;
    get blockSize(): number;
    get outputSize(): number;
    update(message: string | ArrayBuffer): void;
  }

  export class GHASH extends Digest {
    constructor(h: ArrayBuffer, aad?: ArrayBuffer);
  }

  export class BlockCipher {
    constructor(cipher: string, key: ArrayBuffer);
    encrypt(data: ArrayBuffer, result?: ArrayBuffer): ArrayBuffer;
    decrypt(data: ArrayBuffer, result?: ArrayBuffer): ArrayBuffer;
    get keySize(): number;
    get blockSize(): number;
  }

  export class StreamCipher {
    constructor(cipher: string, key: ArrayBuffer);
    encrypt(data: ArrayBuffer, result?: ArrayBuffer, count?: number): ArrayBuffer;
    decrypt(data: ArrayBuffer, result?: ArrayBuffer, count?: number): ArrayBuffer;
    setIV(iv: ArrayBuffer, counter?: number): void;
  }

  export class Mode {
    constructor(mode: string, cipher: BlockCipher, iv?: ArrayBuffer, pad?: boolean);
    encrypt(data: ArrayBuffer, result?: ArrayBuffer, count?: number): ArrayBuffer;
    decrypt(data: ArrayBuffer, result?: ArrayBuffer, count?: number): ArrayBuffer;
    setIV(iv: ArrayBuffer): void;
    eof: boolean;
  }

  const crypt: {
    readonly Digest: typeof Digest;
    readonly BlockCipher: typeof BlockCipher;
    readonly Mode: typeof Mode;
    readonly StreamCipher: typeof StreamCipher;
    readonly GHASH: typeof GHASH;
  };
  export default crypt;
}
