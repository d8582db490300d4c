// Which sensors a device has, as configuration text: "bmp280@0x76,sht3x@0x44,bme280@spi:5" names each
// driver and its I2C address on the board's sensor bus (or its SPI select pin, or a DHT22's data pin),
// and the metric names each kind reports. No driver imports, so settings can validate a configuration
// without opening a bus.

import { LIMITS } from "@kestrel/wire";

export type SensorKind = "bmp280" | "bme280" | "sht3x" | "sht4x" | "ads1115" | "mpu6050" | "dht22";

/** Where a sensor sits: on the I2C sensor bus, on the SPI bus (BMP280, BME280), or on its own pin (DHT22). */
export type SensorBusKind = "i2c" | "spi" | "pin";

export interface SensorSpec {
  kind: SensorKind;
  bus: SensorBusKind;
  /** I2C address, SPI select pin, or the data pin. */
  address: number;
}

/** Metric names each kind reports, in the order its channel fills them. */
export const SENSOR_METRICS: Readonly<Record<SensorKind, readonly string[]>> = Object.freeze(
  {
    bmp280: ["temperature", "pressure"],
    bme280: ["temperature", "pressure", "humidity"],
    sht3x: ["temperature", "humidity"],
    sht4x: ["temperature", "humidity"],
    ads1115: ["voltage"],
    mpu6050: ["accel_x", "accel_y", "accel_z", "gyro_x", "gyro_y", "gyro_z"],
    dht22: ["temperature", "humidity"],
  },
  true,
);

const DEFAULT_ADDRESS: Readonly<Record<SensorKind, number>> = Object.freeze({
  bmp280: 0x76,
  bme280: 0x76,
  sht3x: 0x44,
  sht4x: 0x44,
  ads1115: 0x48,
  mpu6050: 0x68,
  dht22: 4,
});

function isKind(value: string): value is SensorKind {
  return Object.hasOwn(SENSOR_METRICS, value);
}

const PIN_MAX = 63;
const I2C_ADDRESS_MAX = 0x7f;

function where(spec: SensorSpec): string {
  if (spec.bus === "i2c") return `0x${spec.address.toString(16).padStart(2, "0")}`;
  return spec.bus === "spi" ? `spi:${spec.address}` : `${spec.address}`;
}

/**
 * Parses "kind@address,kind@address": an I2C address (decimal or 0x hex; omitted: the kind's usual
 * one), "spi:<select pin>" for a BMP280 or BME280 on the SPI bus, a data pin for a DHT22. Throws an
 * Error naming the first bad entry.
 */
export function parseSensorList(text: string): SensorSpec[] {
  const specs: SensorSpec[] = [];
  let metrics = 0;
  for (const entry of text.split(",")) {
    const trimmed = entry.trim();
    if (trimmed === "") continue;
    const at = trimmed.indexOf("@");
    const kind = at < 0 ? trimmed : trimmed.slice(0, at);
    if (!isKind(kind))
      throw new Error(`sensors: unknown sensor "${kind}" (known: ${Object.keys(SENSOR_METRICS).join(", ")})`);
    let addressText = at < 0 ? "" : trimmed.slice(at + 1);
    let bus: SensorBusKind = kind === "dht22" ? "pin" : "i2c";
    if (addressText.startsWith("spi:")) {
      if (kind !== "bmp280" && kind !== "bme280")
        throw new Error(`sensors: "${trimmed}": only a BMP280 or BME280 sits on SPI`);
      bus = "spi";
      addressText = addressText.slice(4);
    }
    const address = addressText === "" && bus !== "spi" ? DEFAULT_ADDRESS[kind] : Number(addressText);
    const limit = bus === "i2c" ? I2C_ADDRESS_MAX : PIN_MAX;
    if (addressText.trim() === "" && bus === "spi") throw new Error(`sensors: "${trimmed}" needs a select pin 0..63`);
    if (!Number.isInteger(address) || address < 0 || address > limit)
      throw new Error(`sensors: "${trimmed}" needs ${bus === "i2c" ? "an I2C address 0x00..0x7f" : "a pin 0..63"}`);
    const spec: SensorSpec = { kind, bus, address };
    // Pins are shared between the SPI selects and the one-wire sensors; I2C addresses are their own space.
    const pin = bus !== "i2c";
    if (specs.some((other) => (other.bus !== "i2c") === pin && other.address === address))
      throw new Error(`sensors: ${pin ? "pin" : "address"} ${where(spec)} is used twice`);
    specs.push(spec);
    metrics += SENSOR_METRICS[kind].length;
    if (metrics > LIMITS.metricsPerSample)
      throw new Error(
        `sensors: more than ${LIMITS.metricsPerSample} metrics a sample (the wire's limit) at "${trimmed}"`,
      );
  }
  return specs;
}

/** The list back into its text form: "kind@0xNN", "kind@spi:N", "dht22@N". */
export function formatSensorList(specs: readonly SensorSpec[]): string {
  return specs.map((spec) => `${spec.kind}@${where(spec)}`).join(",");
}
