// Moddable's `ota` module on ESP32 (build/devices/esp32/modules/ota): esp_ota_begin on the next
// update partition with sequential writes, esp_ota_write, and complete() = esp_ota_end (the image is
// verified) + esp_ota_set_boot_partition. The SDK ships no typing for it.

declare module "ota" {
  class OTA {
    constructor();
    write(data: ByteBuffer): void;
    cancel(): void;
    complete(): void;
  }

  export { OTA as default };
}
