// Moddable's ECMA-419 `system` module (modules/io/system), which the esp32 IO manifest maps under
// the name "system" (the SDK types it as "embedded:io/system"); the esp32 section of our manifest
// maps this file so the device build type-checks. Only what the firmware uses.

declare module "system" {
  const System: {
    /** Resets the chip (esp_restart); does not return on a device. */
    restart(): void;
  };

  export { System as default };
}
