// Writing short strings and buffers into a Buffer on the paths every message takes. Buffer#write
// and Buffer#copy check their arguments in JavaScript and then cross into C++: for the few dozen
// bytes of a topic, an ack or a record's header that costs more than the copy itself.

/** The longest string written by a loop rather than by Buffer#write. */
const SHORT_STRING = 64;

/**
 * Writes `text` at `at` as UTF-8, `bytes` being its UTF-8 length (Buffer.byteLength); answers
 * where it ends. A string whose UTF-8 length is its length is ASCII: short ones are copied code
 * unit by code unit.
 */
export function writeString(out: Buffer, at: number, text: string, bytes: number): number {
  if (bytes !== text.length || bytes > SHORT_STRING) return at + out.write(text, at);
  for (let i = 0; i < bytes; i++) out[at + i] = text.charCodeAt(i);
  return at + bytes;
}

/** Copies `bytes` whole at `at` (TypedArray#set: no argument checks in JavaScript); answers where it ends. */
export function writeBytes(out: Buffer, at: number, bytes: Uint8Array): number {
  out.set(bytes, at);
  return at + bytes.length;
}
