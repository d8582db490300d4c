// Simulated `kestrel/ota-rollback` (on the ESP32: src/ota-rollback-esp32.ts and its C half): the
// running image's version and rollback state, and the two calls the SDK's `ota` module lacks,
// answered by the Node parent's bootloader model (sim/app-partitions.ts).

import host from "kestrel-sim:host";

/** esp_app_get_description()->version of the running image. */
export function runningVersion(): string {
  return host.call("image.version") as string;
}

/** esp_ota_get_state_partition of the running partition (esp_ota_img_states_t). */
export function runningState(): number {
  return host.call("image.state") as number;
}

/** The version of the other app partition if the bootloader or the app marked it invalid; "" otherwise. */
export function lastInvalidVersion(): string {
  return host.call("image.lastInvalid") as string;
}

/** esp_ota_mark_app_valid_cancel_rollback: the running image stays. */
export function markValid(): void {
  host.call("image.markValid");
}

/** esp_ota_mark_app_invalid_rollback_and_reboot: the previous image boots; this call does not return on a device. */
export function rollback(): void {
  host.call("image.rollback");
}
