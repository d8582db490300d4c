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
export { FastClock, RealTimeClock, type SimClock, VirtualClock } from "./clock.ts";
export {
  type RunningImage,
  SIM_IMAGE_MARKERS,
  type SimDevice,
  type SimDeviceOptions,
  type SimFaults,
  startSimDevice,
} from "./device.ts";
export { BusTimeoutError, busTarget, FaultSet, type PowerLossOptions, seededRandom } from "./faults.ts";
export { FLASH_SECTOR_BYTES, FlashPartition } from "./flash.ts";
export { GpioModel, type PinLevel, type PwmLevel } from "./gpio.ts";
export { I2cBus, I2cNackError, I2cPort, type I2cTarget } from "./i2c-bus.ts";
export type { SimLogger } from "./logger.ts";
export {
  ADS1115_CONFIG_RESET,
  ADS1115_HI_THRESH_RESET,
  ADS1115_LO_THRESH_RESET,
  type Ads1115Conversion,
  Ads1115Model,
  ads1115Code,
} from "./models/ads1115-model.ts";
export {
  type Bme280Conversion,
  type Bme280HumidityTrimming,
  Bme280Model,
  type Bme280ModelOptions,
  humidityFloat,
  TYPICAL_HUMIDITY_TRIMMING,
} from "./models/bme280-model.ts";
export { BoschSpiAdapter } from "./models/bosch-spi.ts";
export {
  Dht22Model,
  type Dht22ModelOptions,
  type Dht22Reading,
  dht22Bytes,
  dht22Pulses,
  type PulseFrame,
  PulsePort,
} from "./models/dht22-model.ts";
export { type Motion, Mpu6050Model, type Mpu6050Reading } from "./models/mpu6050-model.ts";
export {
  type HumidityConversion,
  type HumidityEnvironment,
  type SensirionModelOptions,
  Sht3xModel,
  Sht4xModel,
  sensirionCrc,
} from "./models/sensirion-model.ts";
export { SpiBus, SpiPort, type SpiTarget } from "./spi-bus.ts";
export type { XsMeters } from "./xs-machine.ts";
