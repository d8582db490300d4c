// The plugin host API (module "kestrel") on Node's own WebAssembly engine (V8): the reference a
// plugin's outputs on the device (wasm3 in XS) are compared with, and the baseline of the plugin
// benchmarks. Same contract as src/plugin-host.ts: sensor values by index, declared metrics only,
// finite values only, config numbers, the sample's time, logs.

export interface ReferenceSample {
  values: ArrayLike<number>;
  now: number;
}

export interface ReferenceLog {
  level: number;
  message: string;
}

const decoder = new TextDecoder("utf-8", { fatal: false });

export class ReferencePlugin {
  readonly logs: ReferenceLog[] = [];
  readonly #instance: WebAssembly.Instance;
  readonly #outputs: Float64Array;
  #sample: ReferenceSample | undefined;

  constructor(
    bytes: Uint8Array<ArrayBuffer>,
    options: { sensorNames: readonly string[]; metrics: readonly string[]; config?: Readonly<Record<string, number>> },
  ) {
    const { sensorNames, metrics, config = {} } = options;
    this.#outputs = new Float64Array(metrics.length);
    const text = (offset: number, length: number): string => {
      const memory = this.#instance.exports.memory as WebAssembly.Memory;
      return decoder.decode(new Uint8Array(memory.buffer, offset, length));
    };
    const kestrel = {
      sensor: (offset: number, length: number) => sensorNames.indexOf(text(offset, length)),
      value: (index: number) => {
        const values = this.#sample?.values;
        return values !== undefined && index >= 0 && index < sensorNames.length
          ? (values[index] as number)
          : Number.NaN;
      },
      metric: (offset: number, length: number) => metrics.indexOf(text(offset, length)),
      emit: (index: number, value: number) => {
        if (this.#sample && index >= 0 && index < metrics.length && Number.isFinite(value))
          this.#outputs[index] = value;
      },
      config: (offset: number, length: number) => config[text(offset, length)] ?? Number.NaN,
      log: (level: number, offset: number, length: number) => {
        this.logs.push({ level, message: text(offset, length) });
      },
      now: () => this.#sample?.now ?? Date.now(),
    };
    this.#instance = new WebAssembly.Instance(new WebAssembly.Module(bytes), { kestrel });
  }

  init(): number {
    return (this.#instance.exports.init as () => number)();
  }

  /** Runs on_sample; the metrics it emitted, NaN where it emitted none. */
  sample(sample: ReferenceSample): Float64Array {
    this.#outputs.fill(Number.NaN);
    this.#sample = sample;
    try {
      (this.#instance.exports.on_sample as () => void)();
    } finally {
      this.#sample = undefined;
    }
    return this.#outputs;
  }

  /** An export by name, for benchmarks. */
  exported<T>(name: string): T {
    return this.#instance.exports[name] as T;
  }
}
