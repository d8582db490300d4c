// Installs a firmware image with Moddable's `ota` module: sequential writes to the next app
// partition (esp_ota_write erases each sector as the write enters it) and complete() (esp_ota_end
// verifies the image, esp_ota_set_boot_partition makes it boot next, pending verification).
//
// A download resumed after a reboot needs the `ota` handle back, which does not survive a reset: a
// new one starts at the partition's beginning, so the part already downloaded is read back from the
// partition (Moddable's `flash` module opens it as "nextota") and written again in place, sector by
// sector: each sector is read before the write that erases it.

import { readEsp32Identity } from "@kestrel/wire/esp32-image";
import Flash from "flash";
import OTA from "ota";

/** Why the start of an image is refused, in the artifact pipeline's failure codes. */
export interface HeadProblem {
  code: "wrong_target" | "invalid_image";
  reason: string;
}

export default class FirmwareInstaller {
  readonly kind = "firmware";
  #ota: OTA | undefined;
  #partition: Flash | undefined;

  /** Bytes the next app partition holds: the largest image that fits. */
  get capacity(): number {
    return this.#nextPartition().byteLength;
  }

  /** Starts writing the next app partition from its first byte. */
  begin(): void {
    this.cancel();
    this.#ota = new OTA();
  }

  /**
   * Writes again, in place, what the partition already holds at [offset, offset + length) (after
   * begin(), in order from 0); returns those bytes, for the digest.
   */
  rewrite(offset: number, length: number): ArrayBuffer {
    // Without useHostBuffer, read() copies into an ArrayBuffer.
    const bytes = this.#nextPartition().read(offset, length) as ArrayBuffer;
    this.write(bytes);
    return bytes;
  }

  write(bytes: ArrayBuffer | Uint8Array): void {
    if (!this.#ota) throw new Error("installer not started");
    this.#ota.write(bytes);
  }

  /** esp_ota_end (checks the image) and esp_ota_set_boot_partition: it boots at the next reset. */
  complete(): void {
    if (!this.#ota) throw new Error("installer not started");
    const ota = this.#ota;
    this.#ota = undefined;
    ota.complete();
  }

  cancel(): void {
    this.#ota?.cancel();
    this.#ota = undefined;
  }

  /** The image must be built for this chip and say the version its manifest says. */
  checkHead(head: Uint8Array, chip: string, version: string): HeadProblem | undefined {
    const identity = readEsp32Identity(head);
    if (!identity.ok) return { code: "invalid_image", reason: identity.error.message };
    if (identity.value.chip !== chip)
      return {
        code: "wrong_target",
        reason: `the image is built for ${identity.value.chip ?? `chip id ${identity.value.chipId}`}, this is ${chip}`,
      };
    if (identity.value.app.version !== version)
      return {
        code: "invalid_image",
        reason: `the image says version ${identity.value.app.version}, its manifest ${version}`,
      };
    return undefined;
  }

  #nextPartition(): Flash {
    this.#partition ??= new Flash("nextota");
    return this.#partition;
  }
}
