// The Kestrel plugin SDK (AssemblyScript): everything a plugin can reach on the device. A plugin
// exports `init(): i32` (0 when ready, else a failure code that keeps it from being enabled) and
// `on_sample(): void`, run once per sample after the sensors were read and before the sample is
// batched. Names are resolved once (at init, into Sensor and Metric objects); a sample's work uses
// indexes only, so it allocates nothing.

@external("kestrel", "sensor")
declare function hostSensor(name: usize, length: i32): i32;
@external("kestrel", "value")
declare function hostValue(index: i32): f64;
@external("kestrel", "metric")
declare function hostMetric(name: usize, length: i32): i32;
@external("kestrel", "emit")
declare function hostEmit(index: i32, value: f64): void;
@external("kestrel", "config")
declare function hostConfig(name: usize, length: i32): f64;
@external("kestrel", "log")
declare function hostLog(level: i32, message: usize, length: i32): void;
@external("kestrel", "now")
declare function hostNow(): f64;

export enum Level {
  Debug = 0,
  Info = 1,
  Warn = 2,
  Error = 3,
}

/** A sensor metric of the device ("temperature", "humidity", "sht3x_temperature"...). */
export class Sensor {
  readonly index: i32;

  constructor(name: string) {
    const bytes = String.UTF8.encode(name);
    this.index = hostSensor(changetype<usize>(bytes), bytes.byteLength);
  }

  /** False when the device has no such metric. */
  get present(): bool {
    return this.index >= 0;
  }

  /** This sample's reading; NaN when the sensor gave none (or is absent). */
  get value(): f64 {
    return this.index < 0 ? NaN : hostValue(this.index);
  }
}

/** A metric the plugin emits: declared in its manifest, it travels in the telemetry batch. */
export class Metric {
  readonly index: i32;

  constructor(name: string) {
    const bytes = String.UTF8.encode(name);
    this.index = hostMetric(changetype<usize>(bytes), bytes.byteLength);
  }

  /** False when the manifest does not declare it: emitting it would do nothing. */
  get declared(): bool {
    return this.index >= 0;
  }

  emit(value: f64): void {
    if (this.index >= 0) hostEmit(this.index, value);
  }
}

/** A number from the plugin's configuration (set per assignment in the cloud), or fallback. */
export function config(name: string, fallback: f64): f64 {
  const bytes = String.UTF8.encode(name);
  const value = hostConfig(changetype<usize>(bytes), bytes.byteLength);
  return isNaN(value) ? fallback : value;
}

/** A line in the device's log, tagged with the plugin's name (rate-limited by the host). */
export function log(level: Level, message: string): void {
  const bytes = String.UTF8.encode(message);
  hostLog(level, changetype<usize>(bytes), bytes.byteLength);
}

/** The sample's time, epoch milliseconds. */
export function now(): f64 {
  return hostNow();
}

/** AssemblyScript's abort (a failed assertion, an index out of range): logged, then the call traps. */
export function pluginAbort(message: string | null, fileName: string | null, line: u32, column: u32): void {
  const text = (message !== null ? message : "abort") + " at " + (fileName !== null ? fileName : "?") + ":" + line.toString();
  log(Level.Error, text);
  unreachable();
}
