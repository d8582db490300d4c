// Aosong DHT22 (AM2302) temperature and humidity sensor on one wire, ECMA-419 sensor class pattern. The
// timing-critical part, capturing the line's level durations after the start signal, is a capture
// class (kestrel/pulse-capture: the simulator's, or on the ESP32 the native RMT-receive module); the
// 40-bit frame is decoded in TypeScript (sensors/dht22-frame). The sample path allocates nothing.

import { type Dht22Sample, decodeDht22 } from "sensors/dht22-frame";
import Time from "time";

/** Captures the line after pulling it low for startMs: level durations in µs, alternating from `phase`. */
export interface PulseCapture {
  capture(startMs: number, target: Uint16Array): number;
  /** Level (0 or 1) of target[0] after the last capture. */
  readonly phase: number;
  close(): void;
}

export type PulseCaptureClass = new (options: { pin: number }) => PulseCapture;

export type { Dht22Sample } from "sensors/dht22-frame";

export interface Dht22SensorOptions {
  io: PulseCaptureClass;
  pin: number;
}

/** The host's start signal: at least 1 ms low (AM2302 datasheet, section 7.3). */
const START_MS = 2;
/** The sensor measures after each read and needs this long before the next (AM2302 datasheet). */
const MIN_INTERVAL_MS = 2000;
/** Response (2 levels) and 40 bits of 2 levels each, plus the host pulse, release and end levels. */
const CAPTURE_LENGTH = 96;

export default class DHT22 {
  #capture: PulseCapture | undefined;
  readonly #durations = new Uint16Array(CAPTURE_LENGTH);
  readonly #bytes = new Uint8Array(5);
  /** The last good reading and when it was taken, served again to reads within MIN_INTERVAL_MS. */
  readonly #last: Dht22Sample = { temperature: 0, humidity: 0 };
  #lastAt: number | undefined;

  constructor(options: { sensor: Dht22SensorOptions }) {
    const { io: Capture, pin } = options.sensor;
    this.#capture = new Capture({ pin });
  }

  /**
   * One read; fills target when given. The sensor needs 2 s between reads (a faster one gets no
   * answer), so within 2 s of a good read this returns that reading again, the sensor's latest.
   */
  sample(target?: Dht22Sample): Dht22Sample {
    const capture = this.#capture;
    if (!capture) throw new Error("dht22: closed");
    const result = target ?? { temperature: 0, humidity: 0 };
    const last = this.#last;
    if (this.#lastAt !== undefined && Time.delta(this.#lastAt) < MIN_INTERVAL_MS) {
      result.temperature = last.temperature;
      result.humidity = last.humidity;
      return result;
    }
    const count = capture.capture(START_MS, this.#durations);
    // A failed read leaves no cached reading: the next read goes to the wire.
    this.#lastAt = undefined;
    decodeDht22(this.#durations, count, capture.phase, this.#bytes, result);
    last.temperature = result.temperature;
    last.humidity = result.humidity;
    this.#lastAt = Time.ticks;
    return result;
  }

  close(): void {
    const capture = this.#capture;
    this.#capture = undefined;
    capture?.close();
  }
}
