// The SPI face of a Bosch register model (BMP280, BME280): datasheet 5.3's control byte, whose bit 7
// is RW (1 read, 0 write) in place of the register address's top bit. Reads auto-increment while select
// is held; writes are (control, data) pairs. The model itself is the one the I2C bus talks to.

import type { I2cTarget } from "../i2c-bus.ts";
import type { SpiTarget } from "../spi-bus.ts";

/** While the control byte is clocked in, SDO is high impedance: the pull-up reads 0xFF. */
const HIGH_Z = 0xff;

export class BoschSpiAdapter implements SpiTarget {
  readonly #model: I2cTarget;
  #state: "control" | "read" | "write-data" = "control";
  #writeRegister = 0;

  constructor(model: I2cTarget) {
    this.#model = model;
  }

  get present(): boolean {
    return this.#model.present !== false;
  }

  exchange(bytes: Uint8Array): Uint8Array {
    const out = new Uint8Array(bytes.length);
    let i = 0;
    while (i < bytes.length) {
      const byte = bytes[i] as number;
      if (this.#state === "read") {
        // One burst per run of bytes, so the model latches one conversion for the whole read.
        out.set(this.#model.read(bytes.length - i), i);
        return out;
      }
      out[i] = HIGH_Z;
      if (this.#state === "write-data") {
        this.#model.write(Uint8Array.of(this.#writeRegister, byte));
        this.#state = "control";
      } else if (byte & 0x80) {
        this.#model.write(Uint8Array.of(byte));
        this.#state = "read";
      } else {
        this.#writeRegister = byte | 0x80;
        this.#state = "write-data";
      }
      i++;
    }
    return out;
  }

  deselect(): void {
    this.#state = "control";
  }
}
