// Persistent preferences of one simulated device, kept in a JSON file so values (the boot counter)
// survive restarts. Enforces what the ESP32's NVS-backed `preference` module allows.

import { mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";

/** An ArrayBuffer value travels and is stored as its bytes. */
export interface StoredBuffer {
  buffer: number[];
}

export type PreferenceValue = string | boolean | number | StoredBuffer;

/** NVS namespace and key names hold at most 15 characters. */
const MAX_NAME_LENGTH = 15;
/** NVS strings and blobs are limited to about 4000 bytes per entry. */
const MAX_VALUE_BYTES = 4000;

function checkName(kind: "domain" | "key", name: unknown): string {
  if (typeof name !== "string" || name.length === 0 || name.length > MAX_NAME_LENGTH)
    throw new RangeError(`preference ${kind} must be 1..${MAX_NAME_LENGTH} characters, got ${JSON.stringify(name)}`);
  return name;
}

function checkValue(value: unknown): PreferenceValue {
  if (typeof value === "boolean") return value;
  if (typeof value === "number") {
    if (!Number.isInteger(value)) throw new TypeError("float unsupported");
    return value | 0; // stored as int32, like nvs_set_i32
  }
  if (typeof value === "string") {
    if (Buffer.byteLength(value) > MAX_VALUE_BYTES)
      throw new RangeError(`preference string exceeds ${MAX_VALUE_BYTES} bytes`);
    return value;
  }
  if (typeof value === "object" && value !== null && Array.isArray((value as StoredBuffer).buffer)) {
    const bytes = (value as StoredBuffer).buffer;
    if (bytes.length > MAX_VALUE_BYTES) throw new RangeError(`preference buffer exceeds ${MAX_VALUE_BYTES} bytes`);
    return { buffer: bytes.map((byte) => byte & 0xff) };
  }
  throw new TypeError("unsupported type");
}

export class PreferenceStore {
  readonly file: string;
  readonly #domains: Record<string, Record<string, PreferenceValue>>;

  constructor(file: string) {
    this.file = file;
    this.#domains = PreferenceStore.#load(file);
  }

  static #load(file: string): Record<string, Record<string, PreferenceValue>> {
    let text: string;
    try {
      text = readFileSync(file, "utf8");
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "ENOENT") return {};
      throw error;
    }
    const parsed: unknown = JSON.parse(text);
    if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed))
      throw new Error(`${file}: preferences must be a JSON object of domains`);
    return parsed as Record<string, Record<string, PreferenceValue>>;
  }

  get(domain: string, key: string): PreferenceValue | undefined {
    return this.#domains[checkName("domain", domain)]?.[checkName("key", key)];
  }

  set(domain: string, key: string, value: unknown): void {
    const name = checkName("domain", domain);
    const entries = this.#domains[name] ?? {};
    entries[checkName("key", key)] = checkValue(value);
    this.#domains[name] = entries;
    this.#save();
  }

  delete(domain: string, key: string): void {
    const entries = this.#domains[checkName("domain", domain)];
    if (!entries || !(checkName("key", key) in entries)) return;
    delete entries[key];
    this.#save();
  }

  keys(domain: string): string[] {
    return Object.keys(this.#domains[checkName("domain", domain)] ?? {});
  }

  /** Host calls behind the simulated `preference` module. */
  handle(op: string, args: Record<string, unknown>): unknown {
    const domain = args.domain as string;
    const key = args.key as string;
    switch (op) {
      case "get":
        return this.get(domain, key);
      case "set":
        return this.set(domain, key, args.value);
      case "delete":
        return this.delete(domain, key);
      case "keys":
        return this.keys(domain);
      default:
        throw new Error(`unknown preference operation ${op}`);
    }
  }

  #save(): void {
    mkdirSync(dirname(this.file), { recursive: true });
    const temporary = `${this.file}.tmp`;
    // Write then rename, so a crash mid-write never leaves a torn file (NVS commits atomically too).
    writeFileSync(temporary, `${JSON.stringify(this.#domains, null, 2)}\n`);
    renameSync(temporary, this.file);
  }
}
