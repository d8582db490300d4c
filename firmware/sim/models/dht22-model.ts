// Signal-level model of an Aosong DHT22 (AM2302) on a simulated one-wire pin: it answers the host's
// start signal with the level durations a logic analyser would show (AM2302 datasheet, section 7):
// response 80 µs low / 80 µs high, 40 bits of 50 µs low then 26-28 µs ("0") or 70 µs ("1") high,
// a 50 µs end low. The port applies faults: "disconnect dht:<pin>" (no answer) and "corrupt dht:<pin>"
// (one bit flipped, so the checksum no longer matches).

import { type FaultSet, seededRandom } from "../faults.ts";
import type { HostPort } from "../xs-machine.ts";

export interface Dht22Reading {
  /** °C, resolution 0.1 */
  temperature: number;
  /** %RH, resolution 0.1 */
  humidity: number;
}

export interface Dht22ModelOptions {
  seed?: number;
  now?: () => number;
}

/** A captured frame: durations in µs of alternating levels, the first at level `phase`. */
export interface PulseFrame {
  phase: number;
  durations: number[];
}

/** The five bytes a DHT22 sends for a reading: humidity ×10, temperature ×10 (bit 15 the sign), checksum. */
export function dht22Bytes(reading: Dht22Reading): number[] {
  const humidity = Math.round(reading.humidity * 10);
  const magnitude = Math.round(Math.abs(reading.temperature) * 10);
  const temperature = (reading.temperature < 0 ? 0x8000 : 0) | magnitude;
  const bytes = [humidity >> 8, humidity & 0xff, temperature >> 8, temperature & 0xff];
  return [...bytes, bytes.reduce((sum, byte) => sum + byte, 0) & 0xff];
}

/**
 * The line's levels for a frame of bytes, starting with the host's start pulse (low for startMs) and
 * its release; `bits` cuts the frame short after that many bits (a sensor that stops answering).
 */
export function dht22Pulses(bytes: readonly number[], startMs: number, random: () => number, bits = 40): PulseFrame {
  const jitter = (us: number): number => Math.max(1, Math.round(us + (random() - 0.5) * 6));
  const durations = [startMs * 1000, jitter(30), jitter(80), jitter(80)];
  for (let bit = 0; bit < bits; bit++) {
    const one = ((bytes[bit >> 3] as number) >> (7 - (bit & 7))) & 1;
    durations.push(jitter(50), one ? jitter(70) : jitter(27));
  }
  if (bits === 40) durations.push(jitter(50));
  return { phase: 0, durations };
}

export class Dht22Model {
  /** Every reading the sensor sent, in order. */
  readonly served: Dht22Reading[] = [];
  readonly #now: () => number;
  readonly #random: () => number;
  readonly #base: Dht22Reading;
  #fixed: readonly number[] | undefined;
  #bits = 40;
  present = true;

  constructor(options: Dht22ModelOptions = {}) {
    this.#now = options.now ?? Date.now;
    this.#random = seededRandom(options.seed ?? 1);
    this.#base = { temperature: 18 + 6 * this.#random(), humidity: 40 + 20 * this.#random() };
  }

  /** Sends exactly these five bytes (checksum included, right or wrong) from now on. */
  serveBytes(bytes: readonly number[] | undefined): void {
    this.#fixed = bytes;
  }

  /** Stops every frame after this many bits (40: whole frames). */
  cutAfterBits(bits: number): void {
    this.#bits = bits;
  }

  readingAt(ms: number): Dht22Reading {
    const phase = Math.sin((2 * Math.PI * ms) / 1_800_000);
    return { temperature: this.#base.temperature + 1.5 * phase, humidity: this.#base.humidity - 6 * phase };
  }

  /** The frame for one start signal; flipBit (0..39) corrupts one bit on the wire. */
  answer(startMs: number, flipBit?: number): PulseFrame {
    if (!this.present) return { phase: 0, durations: [startMs * 1000] };
    let bytes = this.#fixed;
    if (!bytes) {
      const reading = this.readingAt(this.#now());
      bytes = dht22Bytes(reading);
    }
    const sent = [...bytes];
    if (flipBit !== undefined) sent[flipBit >> 3] = (sent[flipBit >> 3] as number) ^ (0x80 >> (flipBit & 7));
    const humidity = (((sent[0] as number) << 8) | (sent[1] as number)) / 10;
    const magnitude = ((((sent[2] as number) & 0x7f) << 8) | (sent[3] as number)) / 10;
    if (this.#bits === 40)
      this.served.push({ humidity, temperature: (sent[2] as number) & 0x80 ? -magnitude : magnitude });
    return dht22Pulses(sent, startMs, this.#random, this.#bits);
  }
}

/** The host side of the simulated `kestrel/pulse-capture`: one-wire sensors by pin. */
export class PulsePort implements HostPort {
  readonly #sensors = new Map<number, Dht22Model>();
  readonly #open = new Set<number>();
  readonly #faults: FaultSet | undefined;
  readonly #random: () => number;

  constructor(faults?: FaultSet) {
    this.#faults = faults;
    this.#random = faults?.random ?? seededRandom(1);
  }

  attach(pin: number, sensor: Dht22Model): void {
    this.#sensors.set(pin, sensor);
  }

  handle(op: string, args: Record<string, unknown>): unknown {
    const pin = Number(args.pin);
    if (!Number.isInteger(pin) || pin < 0 || pin > 63) throw new RangeError(`invalid pin ${String(args.pin)}`);
    switch (op) {
      case "open":
        if (this.#open.has(pin)) throw new Error(`pin ${pin} in use`);
        this.#open.add(pin);
        return undefined;
      case "close":
        this.#open.delete(pin);
        return undefined;
      case "capture": {
        if (!this.#open.has(pin)) throw new Error(`pin ${pin} is not open`);
        const startMs = Number(args.startMs);
        const sensor = this.#sensors.get(pin);
        const target = `dht:${pin}`;
        // Nobody answering leaves only the host's own start pulse on the wire.
        if (!sensor || this.#faults?.has("disconnect", target)) return { phase: 0, durations: [startMs * 1000] };
        const flip = this.#faults?.has("corrupt", target) ? Math.floor(this.#random() * 40) : undefined;
        return sensor.answer(startMs, flip);
      }
      default:
        throw new Error(`unknown pulse operation ${op}`);
    }
  }

  /** A chip reset releases every pin. */
  reset(): void {
    this.#open.clear();
  }
}
