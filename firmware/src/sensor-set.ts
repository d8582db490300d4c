// The sensors a device samples, from configuration (kestrel/sensor-config, e.g. "bmp280@0x76,sht3x@0x44"),
// and the boot-time I2C bus scan. Each sensor fills its metrics into one row of values per sample; a
// failing sensor leaves its metrics empty (never a made-up value), is logged, and is closed and probed
// again after repeated failures.

import I2C from "embedded:io/i2c";
import SPI from "embedded:io/spi";
import type Log from "kestrel/log";
import { describeError } from "kestrel/log";
import { SENSOR_METRICS, type SensorSpec } from "kestrel/sensor-config";
import ADS1115 from "sensors/ads1115";
import BME280 from "sensors/bme280";
import BMP280, { type Bmp280SensorOptions } from "sensors/bmp280";
import DHT22, { type PulseCaptureClass } from "sensors/dht22";
import MPU6050 from "sensors/mpu6050";
import SHT3x from "sensors/sht3x";
import SHT4x from "sensors/sht4x";

export interface SensorBus {
  sda: number;
  scl: number;
  /** One-wire capture for DHT22 sensors; without it they cannot be configured. */
  pulseCapture?: PulseCaptureClass;
  /** SPI bus pins, for sensors listed as "kind@spi:<select>". */
  spi?: { in: number; out: number; clock: number };
}

/** Consecutive failed reads after which a sensor is closed and probed again from scratch. */
const REOPEN_AFTER = 3;
/** A lasting failure is logged at its first occurrence, then every this many attempts. */
const LOG_EVERY = 60;
/** The I2C range a scan probes: 0x00-0x07 and 0x78-0x7F are reserved addresses. */
const SCAN_FIRST = 0x08;
const SCAN_LAST = 0x77;

/** One opened sensor: fills its metrics at values[offset...]. */
interface Channel {
  read(values: Float64Array, offset: number): void;
  close(): void;
}

function openChannel(spec: SensorSpec, bus: SensorBus): Channel {
  const i2c = { io: I2C, data: bus.sda, clock: bus.scl, address: spec.address };
  let bosch: Bmp280SensorOptions = i2c;
  if (spec.bus === "spi") {
    if (!bus.spi) throw new Error(`${spec.kind}: no SPI bus configured`);
    bosch = { io: SPI, in: bus.spi.in, out: bus.spi.out, clock: bus.spi.clock, select: spec.address };
  }
  switch (spec.kind) {
    case "bmp280": {
      const sensor = new BMP280({ sensor: bosch });
      const sample = { temperature: 0, pressure: 0 };
      return {
        read(values, offset) {
          sensor.sample(sample);
          values[offset] = sample.temperature;
          values[offset + 1] = Math.round(sample.pressure * 100) / 100;
        },
        close: () => sensor.close(),
      };
    }
    case "bme280": {
      const sensor = new BME280({ sensor: bosch });
      const sample = { temperature: 0, pressure: 0, humidity: 0 };
      return {
        read(values, offset) {
          sensor.sample(sample);
          values[offset] = sample.temperature;
          values[offset + 1] = Math.round(sample.pressure * 100) / 100;
          values[offset + 2] = Math.round(sample.humidity * 100) / 100;
        },
        close: () => sensor.close(),
      };
    }
    case "sht3x":
    case "sht4x": {
      const sensor = spec.kind === "sht3x" ? new SHT3x({ sensor: i2c }) : new SHT4x({ sensor: i2c });
      const sample = { temperature: 0, humidity: 0 };
      return {
        read(values, offset) {
          sensor.sample(sample);
          values[offset] = Math.round(sample.temperature * 100) / 100;
          values[offset + 1] = Math.round(sample.humidity * 100) / 100;
        },
        close: () => sensor.close(),
      };
    }
    case "ads1115": {
      const sensor = new ADS1115({ sensor: i2c });
      const sample = { voltage: 0, raw: 0 };
      return {
        read(values, offset) {
          sensor.sample(sample);
          values[offset] = sample.voltage;
        },
        close: () => sensor.close(),
      };
    }
    case "mpu6050": {
      const sensor = new MPU6050({ sensor: i2c });
      const sample = { accelerometer: { x: 0, y: 0, z: 0 }, gyroscope: { x: 0, y: 0, z: 0 }, temperature: 0 };
      return {
        read(values, offset) {
          sensor.sample(sample);
          values[offset] = sample.accelerometer.x;
          values[offset + 1] = sample.accelerometer.y;
          values[offset + 2] = sample.accelerometer.z;
          values[offset + 3] = sample.gyroscope.x;
          values[offset + 4] = sample.gyroscope.y;
          values[offset + 5] = sample.gyroscope.z;
        },
        close: () => sensor.close(),
      };
    }
    case "dht22": {
      if (!bus.pulseCapture) throw new Error("dht22: no pulse capture on this platform");
      const sensor = new DHT22({ sensor: { io: bus.pulseCapture, pin: spec.address } });
      const sample = { temperature: 0, humidity: 0 };
      return {
        read(values, offset) {
          sensor.sample(sample);
          values[offset] = sample.temperature;
          values[offset + 1] = sample.humidity;
        },
        close: () => sensor.close(),
      };
    }
  }
}

interface Slot {
  spec: SensorSpec;
  offset: number;
  width: number;
  channel: Channel | undefined;
  failures: number;
}

export default class SensorSet {
  /** Metric names, one per column of `values`. */
  readonly names: readonly string[];
  /** The last sample's values; NaN where a sensor gave none. */
  readonly values: Float64Array;
  readonly #slots: Slot[];
  readonly #bus: SensorBus;
  readonly #log: Log;

  constructor(specs: readonly SensorSpec[], bus: SensorBus, log: Log) {
    this.#bus = bus;
    this.#log = log;
    const names: string[] = [];
    this.#slots = specs.map((spec) => {
      const offset = names.length;
      // A second sensor measuring the same quantity reports it under its kind's prefix.
      for (const metric of SENSOR_METRICS[spec.kind]) {
        let name = metric;
        if (names.includes(name)) name = `${spec.kind}_${metric}`;
        if (names.includes(name)) name = `${spec.kind}_${spec.address}_${metric}`;
        names.push(name);
      }
      return { spec, offset, width: SENSOR_METRICS[spec.kind].length, channel: undefined, failures: 0 };
    });
    this.names = names;
    this.values = new Float64Array(names.length);
  }

  /** Samples every sensor (opening any not open yet); returns how many metrics got a value. */
  sample(): number {
    const values = this.values;
    values.fill(Number.NaN);
    let filled = 0;
    for (const slot of this.#slots) {
      const channel = slot.channel ?? this.#open(slot);
      if (!channel) continue;
      try {
        channel.read(values, slot.offset);
      } catch (error) {
        for (let i = 0; i < slot.width; i++) values[slot.offset + i] = Number.NaN;
        this.#failed(slot, "read failed", error);
        if (slot.failures === REOPEN_AFTER) {
          this.#log.write("warn", `${slot.spec.kind} closed after failed reads, probing it again`, {
            failures: slot.failures,
          });
          channel.close();
          slot.channel = undefined;
        }
        continue;
      }
      slot.failures = 0;
      filled += slot.width;
    }
    return filled;
  }

  close(): void {
    for (const slot of this.#slots) {
      slot.channel?.close();
      slot.channel = undefined;
    }
  }

  #open(slot: Slot): Channel | undefined {
    const { kind, address } = slot.spec;
    try {
      slot.channel = openChannel(slot.spec, this.#bus);
    } catch (error) {
      this.#failed(slot, "unavailable", error);
      return undefined;
    }
    slot.failures = 0;
    this.#log.write("info", `${kind} ready`, { address });
    return slot.channel;
  }

  #failed(slot: Slot, what: string, error: unknown): void {
    const failures = ++slot.failures;
    if (failures === 1 || failures % LOG_EVERY === 0)
      this.#log.write("error", `${slot.spec.kind} ${what}`, {
        error: describeError(error),
        failures,
        address: slot.spec.address,
      });
  }
}

/**
 * Addresses that acknowledge on the bus: an address-only write to each of 0x08..0x77, the way
 * i2cdetect probes. Moddable's ESP32 I2C turns a zero-length write into i2c_master_probe and returns
 * 1 (rather than throwing) when nothing acknowledges. A stuck bus fails every probe: it finds nothing.
 */
export function scanI2c(sda: number, scl: number): number[] {
  const found: number[] = [];
  const empty = new Uint8Array(0);
  for (let address = SCAN_FIRST; address <= SCAN_LAST; address++) {
    let device: I2C | undefined;
    try {
      device = new I2C({ data: sda, clock: scl, hz: 100_000, address });
      if ((device.write as (buffer: Uint8Array) => unknown)(empty) === undefined) found.push(address);
    } catch {
      // No acknowledge: nothing at this address.
    } finally {
      (device as { close?: () => void } | undefined)?.close?.();
    }
  }
  return found;
}
