// Simulated Moddable `ota` module (build/devices/esp32/modules/ota): the same class and methods;
// the Node parent's app-partition model does what esp_ota_begin/write/end and
// esp_ota_set_boot_partition do on the chip (sim/app-partitions.ts).

import host from "kestrel-sim:host";

function bytesOf(data: ByteBuffer): number[] {
  if (data instanceof ArrayBuffer) return Array.from(new Uint8Array(data));
  if (ArrayBuffer.isView(data)) return Array.from(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
  throw new TypeError("data must be an ArrayBuffer or a view");
}

class OTA {
  constructor() {
    host.call("ota.begin");
  }

  write(data: ByteBuffer): void {
    host.call("ota.write", { bytes: bytesOf(data) });
  }

  cancel(): void {
    host.call("ota.cancel");
  }

  complete(): void {
    host.call("ota.complete");
  }
}
Object.freeze(OTA.prototype);

export default OTA;
