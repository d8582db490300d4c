// Moddable's ESP32 `resetReason` module (build/devices/esp32/modules/resetReason): the chip's
// esp_reset_reason() code and its name.

declare module "resetReason" {
  export default function getResetReason(): { reason: number; string: string };
}
