// The simulated chip's two OTA app partitions (ota_0, ota_1), its otadata and the ESP-IDF
// bootloader's choice with CONFIG_BOOTLOADER_APP_ROLLBACK_ENABLE:
//
// - boot the partition with the highest otadata sequence whose state is not invalid or aborted and
//   whose image verifies (structure, checksum, SHA-256), else the other one;
// - an image booting in state NEW becomes PENDING_VERIFY; one found still PENDING_VERIFY at the next
//   boot (it reset before esp_ota_mark_app_valid_cancel_rollback) becomes ABORTED and the other
//   partition boots instead: a new image that crashes rolls back by itself;
// - esp_ota_mark_app_invalid_rollback_and_reboot marks the running one INVALID and boots the other.
//
// Writes through Moddable's `ota` module follow esp_ota_write with OTA_WITH_SEQUENTIAL_WRITES: the
// first byte must be the image magic, a sector is erased when the write pointer enters it, and
// esp_ota_end verifies the image before esp_ota_set_boot_partition makes it NEW with the next
// sequence. Partitions and otadata are files in the device's state directory, written through, so a
// power cut keeps exactly what reached them.

import { closeSync, existsSync, mkdirSync, openSync, readFileSync, readSync, writeFileSync, writeSync } from "node:fs";
import { dirname, join } from "node:path";
import { type AppDescription, Esp32ImageChecker, readEsp32Identity } from "@kestrel/wire/esp32-image";
import { nodeSha256 } from "./crypto.ts";
import { FLASH_SECTOR_BYTES } from "./flash.ts";

/** ota_0 and ota_1 in esp32/partitions.csv. */
export const APP_PARTITION_BYTES = 0x1b0000;

export type OtaImageState = "new" | "pending-verify" | "valid" | "invalid" | "aborted" | "undefined";

/** esp_ota_img_states_t values, as the native module returns them. */
export const OTA_IMAGE_STATES: Readonly<Record<OtaImageState, number>> = Object.freeze({
  new: 0,
  "pending-verify": 1,
  valid: 2,
  invalid: 3,
  aborted: 4,
  undefined: 0xffffffff,
});

interface OtaData {
  /** Sequence per slot; 0: never set (esp_ota_set_boot_partition was not called for it). */
  seq: [number, number];
  state: [OtaImageState, OtaImageState];
}

export interface BootedImage {
  slot: 0 | 1;
  app: AppDescription;
  state: OtaImageState;
}

export class AppPartitions {
  readonly byteLength: number;
  readonly #files: [string, string];
  readonly #otadataFile: string;
  readonly #fds: [number, number];
  #otadata: OtaData;
  #running: 0 | 1 = 0;
  /** The OTA write in progress: the partition and where the next write goes. */
  #session: { slot: 0 | 1; written: number } | undefined;
  #closed = false;

  constructor(options: { dir: string; deviceId: string; byteLength?: number; factoryImage: () => Uint8Array }) {
    this.byteLength = options.byteLength ?? APP_PARTITION_BYTES;
    if (this.byteLength % FLASH_SECTOR_BYTES !== 0) throw new RangeError("app partitions are whole sectors");
    mkdirSync(options.dir, { recursive: true });
    this.#files = [
      join(options.dir, `${options.deviceId}.ota_0.bin`),
      join(options.dir, `${options.deviceId}.ota_1.bin`),
    ];
    this.#otadataFile = join(options.dir, `${options.deviceId}.otadata.json`);
    const fresh = !existsSync(this.#files[0]);
    for (const file of this.#files) {
      mkdirSync(dirname(file), { recursive: true });
      if (!existsSync(file)) writeFileSync(file, Buffer.alloc(this.byteLength, 0xff));
    }
    this.#fds = [openSync(this.#files[0], "r+"), openSync(this.#files[1], "r+")];
    // What `idf.py flash` leaves: the build in ota_0, no otadata.
    if (fresh) writeSync(this.#fds[0], options.factoryImage(), 0, undefined, 0);
    this.#otadata = existsSync(this.#otadataFile)
      ? (JSON.parse(readFileSync(this.#otadataFile, "utf8")) as OtaData)
      : { seq: [0, 0], state: ["undefined", "undefined"] };
  }

  /** The bootloader: picks, updates otadata and reports the image that runs. */
  boot(): BootedImage {
    this.#session = undefined;
    const data = this.#otadata;
    const bootable = (slot: 0 | 1) => data.state[slot] !== "invalid" && data.state[slot] !== "aborted";
    const bySeq = ([0, 1] as const).filter((slot) => data.seq[slot] > 0).sort((a, b) => data.seq[b] - data.seq[a]);
    const order: Array<0 | 1> = [...bySeq, 0, 1].filter((slot, i, all) => all.indexOf(slot) === i) as Array<0 | 1>;
    for (const slot of order) {
      if (data.seq[slot] > 0 && !bootable(slot)) continue;
      if (data.state[slot] === "pending-verify") {
        // It booted once and never confirmed: the rollback rule.
        data.state[slot] = "aborted";
        this.#save();
        continue;
      }
      const app = this.#verify(slot);
      if (!app) continue;
      if (data.state[slot] === "new") {
        data.state[slot] = "pending-verify";
        this.#save();
      }
      this.#running = slot;
      return { slot, app, state: data.state[slot] };
    }
    throw new Error("no bootable app partition");
  }

  /** The running image's esp_ota_img_states_t. */
  get runningState(): OtaImageState {
    return this.#otadata.state[this.#running];
  }

  /** esp_ota_get_last_invalid_partition: the other slot's version when it holds an invalid or aborted image. */
  lastInvalidVersion(): string {
    const other = (1 - this.#running) as 0 | 1;
    const state = this.#otadata.state[other];
    if (state !== "invalid" && state !== "aborted") return "";
    return this.#identity(other)?.version ?? "";
  }

  markValid(): void {
    this.#otadata.state[this.#running] = "valid";
    this.#save();
  }

  /** esp_ota_mark_app_invalid_rollback_and_reboot, up to the reboot (the caller resets the chip). */
  markInvalidForRollback(): void {
    const other = (1 - this.#running) as 0 | 1;
    if (!this.#verify(other)) throw new Error("no other app to roll back to");
    this.#otadata.state[this.#running] = "invalid";
    this.#otadata.seq[other] = Math.max(...this.#otadata.seq) + 1;
    if (this.#otadata.state[other] === "undefined") this.#otadata.state[other] = "valid";
    this.#save();
  }

  // --- Moddable's `ota` module ------------------------------------------------------------------

  /** esp_ota_begin on esp_ota_get_next_update_partition. */
  begin(): void {
    this.#session = { slot: this.#nextSlot(), written: 0 };
  }

  /** esp_ota_write: sequential, erasing each sector as the write enters it. Returns the write's range. */
  write(bytes: Uint8Array, tear?: number): void {
    const session = this.#session;
    if (!session) throw new Error("bad state");
    if (session.written === 0 && bytes[0] !== 0xe9) throw new Error("write failed");
    if (session.written + bytes.length > this.byteLength) throw new Error("write failed");
    const start = session.written;
    const firstNew = Math.ceil(start / FLASH_SECTOR_BYTES);
    const last = Math.floor((start + bytes.length - 1) / FLASH_SECTOR_BYTES);
    for (let sector = firstNew; sector <= last; sector++) this.#erase(session.slot, sector);
    const kept = tear === undefined ? bytes.length : tear;
    if (kept > 0) this.#program(session.slot, start, bytes.subarray(0, kept));
    session.written += bytes.length;
  }

  cancel(): void {
    this.#session = undefined;
  }

  /** esp_ota_end (the image must verify) then esp_ota_set_boot_partition: NEW, with the next sequence. */
  complete(): void {
    const session = this.#session;
    if (!session) throw new Error("bad state");
    this.#session = undefined;
    if (!this.#verify(session.slot)) throw new Error("end failed");
    this.#otadata.seq[session.slot] = Math.max(...this.#otadata.seq) + 1;
    this.#otadata.state[session.slot] = "new";
    this.#save();
  }

  // --- Moddable's `flash` module on "running" and "nextota" ------------------------------------

  slotOf(partition: string): 0 | 1 | undefined {
    if (partition === "running") return this.#running;
    if (partition === "nextota") return this.#nextSlot();
    return undefined;
  }

  read(slot: 0 | 1, offset: number, length: number): Buffer {
    if (offset < 0 || length <= 0 || offset + length > this.byteLength) throw new Error("read failed");
    const buffer = Buffer.alloc(length);
    readSync(this.#fds[slot], buffer, 0, length, offset);
    return buffer;
  }

  erase(slot: 0 | 1, sector: number): void {
    if (sector < 0 || (sector + 1) * FLASH_SECTOR_BYTES > this.byteLength) throw new Error("erase failed");
    this.#erase(slot, sector);
  }

  program(slot: 0 | 1, offset: number, bytes: Uint8Array): void {
    if (offset < 0 || offset + bytes.length > this.byteLength) throw new Error("write failed");
    this.#program(slot, offset, bytes);
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const fd of this.#fds) closeSync(fd);
  }

  #nextSlot(): 0 | 1 {
    return (1 - this.#running) as 0 | 1;
  }

  #erase(slot: 0 | 1, sector: number): void {
    writeSync(
      this.#fds[slot],
      Buffer.alloc(FLASH_SECTOR_BYTES, 0xff),
      0,
      FLASH_SECTOR_BYTES,
      sector * FLASH_SECTOR_BYTES,
    );
  }

  /** NOR: a write only clears bits. */
  #program(slot: 0 | 1, offset: number, bytes: Uint8Array): void {
    const stored = this.read(slot, offset, bytes.length);
    for (let i = 0; i < bytes.length; i++) stored[i] = (stored[i] as number) & (bytes[i] as number);
    writeSync(this.#fds[slot], stored, 0, stored.length, offset);
  }

  #identity(slot: 0 | 1): AppDescription | undefined {
    const head = readEsp32Identity(this.read(slot, 0, 512));
    return head.ok ? head.value.app : undefined;
  }

  /** esp_image_verify: the whole image checks out (it ends before the partition does). */
  #verify(slot: 0 | 1): AppDescription | undefined {
    const checker = new Esp32ImageChecker(nodeSha256(), { ignoreTrailing: true });
    for (let offset = 0; offset < this.byteLength && !checker.complete; offset += FLASH_SECTOR_BYTES)
      if (checker.write(this.read(slot, offset, FLASH_SECTOR_BYTES))) return undefined;
    const image = checker.end();
    return image.ok ? image.value.app : undefined;
  }

  #save(): void {
    writeFileSync(this.#otadataFile, JSON.stringify(this.#otadata));
  }
}
