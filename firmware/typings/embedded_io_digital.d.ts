// ECMA-419 digital IO as Moddable implements it (modules/io/digital): the subset the firmware uses,
// kept a strict subset of the SDK's typings/embedded_io/digital.d.ts.

declare module "embedded:io/digital" {
  // biome-ignore lint/complexity/noUselessEmptyExport: without it every declaration in the block is importable; the SDK exports only the class.
  export {};

  class Digital {
    static readonly Input: number;
    static readonly InputPullUp: number;
    static readonly InputPullDown: number;
    static readonly Output: number;
    static readonly OutputOpenDrain: number;
    /** Edge flags for `edge`: onReadable runs when the input changes that way. */
    static readonly Rising: number;
    static readonly Falling: number;
    constructor(options: { pin: number; mode: number; edge?: number; onReadable?: (this: Digital) => void });
    write(value: 0 | 1): void;
    read(): 0 | 1;
    close(): void;
  }

  export default Digital;
}
