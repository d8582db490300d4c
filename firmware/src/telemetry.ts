// Collects samples into preallocated arrays and serializes a full batch as one TelemetryBatch
// payload, so the queue holds compact strings rather than object graphs.

import { LIMITS, type TelemetryBatch, type TelemetrySample, WIRE_VERSION } from "@kestrel/wire";

export default class TelemetryBatcher {
  readonly boot: number;
  readonly samplesPerBatch: number;
  readonly #seq: Float64Array;
  readonly #ts: Float64Array;
  readonly #temperature: Float64Array;
  readonly #pressure: Float64Array;
  #count = 0;

  constructor(boot: number, samplesPerBatch: number) {
    if (!Number.isInteger(samplesPerBatch) || samplesPerBatch < 1 || samplesPerBatch > LIMITS.samplesPerBatch)
      throw new RangeError(`telemetry: samplesPerBatch must be 1..${LIMITS.samplesPerBatch}, got ${samplesPerBatch}`);
    this.boot = boot;
    this.samplesPerBatch = samplesPerBatch;
    this.#seq = new Float64Array(samplesPerBatch);
    this.#ts = new Float64Array(samplesPerBatch);
    this.#temperature = new Float64Array(samplesPerBatch);
    this.#pressure = new Float64Array(samplesPerBatch);
  }

  get pending(): number {
    return this.#count;
  }

  /** Adds one sample; returns the serialized batch when it completes one, else undefined. */
  add(seq: number, ts: number, temperature: number, pressure: number): string | undefined {
    const i = this.#count;
    this.#seq[i] = seq;
    this.#ts[i] = ts;
    this.#temperature[i] = temperature;
    this.#pressure[i] = pressure;
    this.#count = i + 1;
    return this.#count === this.samplesPerBatch ? this.take() : undefined;
  }

  /** Serializes and clears the samples collected so far; undefined when there are none. */
  take(): string | undefined {
    const count = this.#count;
    if (count === 0) return undefined;
    const samples: TelemetrySample[] = new Array(count);
    for (let i = 0; i < count; i++) {
      samples[i] = {
        seq: this.#seq[i] as number,
        ts: this.#ts[i] as number,
        m: {
          temperature: this.#temperature[i] as number,
          pressure: Math.round((this.#pressure[i] as number) * 100) / 100,
        },
      };
    }
    this.#count = 0;
    const batch: TelemetryBatch = { v: WIRE_VERSION, boot: this.boot, samples };
    return JSON.stringify(batch);
  }
}
