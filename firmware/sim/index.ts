// Public API of the firmware simulator (`@kestrel/firmware/sim`): start simulated devices that run
// the compiled firmware in the real XS engine, and the pieces tests use to look inside them.

export {
  type Bmp280Conversion,
  type Bmp280Environment,
  Bmp280Model,
  type Bmp280ModelOptions,
  type Bmp280Trimming,
  compensateFloat,
  DATASHEET_TRIMMING,
} from "./bmp280-model.ts";
export { FastClock, RealTimeClock, type SimClock } from "./clock.ts";
export { type SimDevice, type SimDeviceOptions, startSimDevice } from "./device.ts";
export { FLASH_SECTOR_BYTES, FlashPartition } from "./flash.ts";
export { GpioModel, type PinLevel } from "./gpio.ts";
export { I2cBus, I2cNackError, I2cPort, type I2cTarget } from "./i2c-bus.ts";
export type { SimLogger } from "./logger.ts";
export type { XsMeters } from "./xs-machine.ts";
