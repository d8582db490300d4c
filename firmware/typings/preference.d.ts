// Moddable's `preference` module: small persistent key/value store (NVS on ESP32). Domains and
// keys are at most 15 characters; numbers must be 32-bit integers.

declare module "preference" {
  const Preference: {
    set: (domain: string, key: string, value: string | boolean | number | ArrayBuffer) => void;
    get: (domain: string, key: string) => string | boolean | number | ArrayBuffer | undefined;
    delete: (domain: string, key: string) => void;
    keys: (domain: string) => string[];
  };

  export { Preference as default };
}
