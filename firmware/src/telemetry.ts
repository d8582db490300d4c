// Collects samples into preallocated arrays and serializes a full batch as one TelemetryBatch
// payload, so the queue holds compact strings rather than object graphs. Each sample is a row of
// values in the order of the batcher's metric names; NaN marks a metric with no value that sample.

import { LIMITS, type TelemetryBatch, type TelemetrySample, WIRE_VERSION } from "@kestrel/wire";

/** A flash sector's 4,084-byte record payload less the batch envelope ({"v":1,"boot":...,"samples":[]}). */
const BATCH_SAMPLES_BYTES = 4_040;
/** {"seq":4294967295,"ts":4102444799999,"m":{}}, plus the separating comma. */
const SAMPLE_ENVELOPE_BYTES = 46;
/** The longest a double prints as in JSON (e.g. -1.2345678901234567e-100). */
const NUMBER_BYTES = 24;
/** The sensor set rounds these to 0.01 within the sensors' ranges: at most "109999.99". */
const ROUNDED_NUMBER_BYTES = 9;
const ROUNDED = /(temperature|pressure|humidity)$/;
// JSON.stringify keeps the key order of take(), and metric names cannot contain quotes or braces.
const BOOT_KEY = '"boot":';
const SEQ_KEY = '{"seq":';

/**
 * How many samples a batch may hold with these metrics, at most `wanted`: the worst-case batch must
 * fit one flash sector (and so the ESP32's 8 KB TCP send buffer).
 */
export function samplesPerBatchFor(names: readonly string[], wanted: number): number {
  let sampleBytes = SAMPLE_ENVELOPE_BYTES;
  // "name":value, for each metric
  for (const name of names) sampleBytes += name.length + 4 + (ROUNDED.test(name) ? ROUNDED_NUMBER_BYTES : NUMBER_BYTES);
  return Math.max(1, Math.min(wanted, Math.floor(BATCH_SAMPLES_BYTES / sampleBytes)));
}

export default class TelemetryBatcher {
  readonly boot: number;
  readonly samplesPerBatch: number;
  readonly names: readonly string[];
  readonly #seq: Float64Array;
  readonly #ts: Float64Array;
  readonly #values: Float64Array;
  #count = 0;

  constructor(boot: number, samplesPerBatch: number, names: readonly string[]) {
    if (!Number.isInteger(samplesPerBatch) || samplesPerBatch < 1 || samplesPerBatch > LIMITS.samplesPerBatch)
      throw new RangeError(`telemetry: samplesPerBatch must be 1..${LIMITS.samplesPerBatch}, got ${samplesPerBatch}`);
    if (names.length < 1 || names.length > LIMITS.metricsPerSample)
      throw new RangeError(`telemetry: 1..${LIMITS.metricsPerSample} metrics, got ${names.length}`);
    this.boot = boot;
    this.samplesPerBatch = samplesPerBatch;
    this.names = names;
    this.#seq = new Float64Array(samplesPerBatch);
    this.#ts = new Float64Array(samplesPerBatch);
    this.#values = new Float64Array(samplesPerBatch * names.length);
  }

  get pending(): number {
    return this.#count;
  }

  /** Adds one sample (values in `names` order); returns the serialized batch when it completes one. */
  add(seq: number, ts: number, values: Float64Array): string | undefined {
    const i = this.#count;
    this.#seq[i] = seq;
    this.#ts[i] = ts;
    this.#values.set(values.subarray(0, this.names.length), i * this.names.length);
    this.#count = i + 1;
    return this.#count === this.samplesPerBatch ? this.take() : undefined;
  }

  /** Serializes and clears the samples collected so far; undefined when there are none. */
  take(): string | undefined {
    const count = this.#count;
    if (count === 0) return undefined;
    const names = this.names;
    const width = names.length;
    const samples: TelemetrySample[] = new Array(count);
    for (let i = 0; i < count; i++) {
      const m: Record<string, number> = {};
      for (let j = 0; j < width; j++) {
        const value = this.#values[i * width + j] as number;
        if (!Number.isNaN(value)) m[names[j] as string] = value;
      }
      samples[i] = { seq: this.#seq[i] as number, ts: this.#ts[i] as number, m };
    }
    this.#count = 0;
    const batch: TelemetryBatch = { v: WIRE_VERSION, boot: this.boot, samples };
    return JSON.stringify(batch);
  }
}

/** The boot of a batch take() serialized, read without parsing the whole payload. */
export function batchBoot(batch: string): number {
  return Number.parseInt(batch.slice(batch.indexOf(BOOT_KEY) + BOOT_KEY.length), 10);
}

/** The seq of the last sample of a batch take() serialized: what the receiver's ack names. */
export function batchLastSeq(batch: string): number {
  return Number.parseInt(batch.slice(batch.lastIndexOf(SEQ_KEY) + SEQ_KEY.length), 10);
}
