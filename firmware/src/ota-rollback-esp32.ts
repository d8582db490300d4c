// kestrel/ota-rollback on the ESP32: the running image's version and rollback state, and the two
// calls Moddable's `ota` module lacks (esp32/ota-rollback/ota-rollback.c), bound with XS's `native`
// as src/pulse-capture-esp32.ts is. The simulator maps sim/xs/ota-rollback in its place.

const self = Object.freeze({});

/** esp_app_get_description()->version of the running image. */
export function runningVersion(): string {
  return native("xs_kestrel_ota_running_version").call(self) as string;
}

/** esp_ota_get_state_partition of the running partition (esp_ota_img_states_t). */
export function runningState(): number {
  return native("xs_kestrel_ota_running_state").call(self) as number;
}

/** The version of the other app partition if the bootloader or the app marked it invalid; "" otherwise. */
export function lastInvalidVersion(): string {
  return native("xs_kestrel_ota_last_invalid_version").call(self) as string;
}

/** esp_ota_mark_app_valid_cancel_rollback: the running image stays. */
export function markValid(): void {
  native("xs_kestrel_ota_mark_valid").call(self);
}

/** esp_ota_mark_app_invalid_rollback_and_reboot: the previous image boots; does not return. */
export function rollback(): void {
  native("xs_kestrel_ota_rollback").call(self);
}
