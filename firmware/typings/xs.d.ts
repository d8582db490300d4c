// XS globals the firmware uses. Moddable's xs/includes/xs.d.ts declares them for device builds;
// these declarations are a compatible subset for our own tsc build.

type Trace = (...log: (string | number | boolean)[]) => void;

/** Writes to the debug console (xsbug or serial); no separator, no newline added. */
declare const trace: Trace;

/** What ECMA-419 IO accepts as a buffer: as narrow as the SDK's own declaration (no wider typed arrays). */
type ByteBuffer = ArrayBufferLike | Uint8Array | Uint8ClampedArray | Int8Array | DataView;

/** XS extensions: strings to and from UTF-8 bytes without TextEncoder. */
interface StringConstructor {
  fromArrayBuffer(buffer: ArrayBufferLike): string;
}

interface ArrayBufferConstructor {
  fromString(string: string): ArrayBuffer;
}

/** XS `Native` API: a constructor whose instances are host objects with this native destructor. */
declare function Native(name: string): new () => object;

/** XS `Native` API: the host function of this name (xsc only accepts a string literal). */
declare function native(name: string): (this: unknown, ...args: unknown[]) => unknown;

/** XS: `Object.freeze(object, true)` freezes deeply (every object reachable from it), as the SDK types it. */
interface ObjectConstructor {
  freeze<T>(object: T, deep: boolean): Readonly<T>;
}
