// Simulated Moddable `preference` module: values persist in the Node parent's per-device store, with
// the ESP32 NVS rules (checked there).

import host from "kestrel-sim:host";

type PreferenceValue = string | boolean | number | ArrayBuffer;

interface StoredBuffer {
  buffer: number[];
}

function isStoredBuffer(value: unknown): value is StoredBuffer {
  return typeof value === "object" && value !== null && Array.isArray((value as StoredBuffer).buffer);
}

// biome-ignore lint/complexity/noStaticOnlyClass: the SDK's Preference is a class with static members, and the simulated one must be too.
export default class Preference {
  static set(domain: string, key: string, value: PreferenceValue): void {
    const encoded = value instanceof ArrayBuffer ? { buffer: Array.from(new Uint8Array(value)) } : value;
    host.call("preference.set", { domain: String(domain), key: String(key), value: encoded });
  }

  static get(domain: string, key: string): PreferenceValue | undefined {
    const value = host.call("preference.get", { domain: String(domain), key: String(key) });
    if (isStoredBuffer(value)) return Uint8Array.from(value.buffer).buffer;
    return value as PreferenceValue | undefined;
  }

  static delete(domain: string, key: string): void {
    host.call("preference.delete", { domain: String(domain), key: String(key) });
  }

  static keys(domain: string): string[] {
    return host.call("preference.keys", { domain: String(domain) }) as string[];
  }
}
