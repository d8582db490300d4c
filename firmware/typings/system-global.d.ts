// The global `System` that Moddable's `system` module sets (modules/io/system), as the SDK types it
// in typings/global.d.ts (`typeof` its `embedded:io/system` class): the subset the firmware uses. Device
// builds use the SDK's own declaration; this file is never mapped for them.

declare const System: {
  /** Resets the chip (esp_restart); does not return on a device. */
  restart(): void;
};
