// Simulated `kestrel/pulse-capture`: on the ESP32 the RMT peripheral times a one-wire sensor's levels;
// here the Node parent's signal-level model answers the start signal with its level durations, and
// virtual time passes for the start pulse and the frame as it would on the wire.

import host from "kestrel-sim:host";

/** A whole DHT22 frame lasts under 5.5 ms after the start signal; the ESP32 capture waits 7. */
const FRAME_MS = 7;

export default class PulseCapture {
  readonly #pin: number;
  #open = true;
  #phase = 0;

  constructor(options: { pin: number }) {
    if (!Number.isInteger(options.pin)) throw new RangeError("invalid pin");
    this.#pin = options.pin;
    host.call("pulse.open", { pin: this.#pin });
  }

  get phase(): number {
    return this.#phase;
  }

  capture(startMs: number, target: Uint16Array): number {
    if (!this.#open) throw new Error("pulse capture closed");
    const frame = host.call("pulse.capture", { pin: this.#pin, startMs }) as { phase: number; durations: number[] };
    host.delay(startMs + FRAME_MS);
    const count = Math.min(frame.durations.length, target.length);
    for (let i = 0; i < count; i++) target[i] = frame.durations[i] as number;
    this.#phase = frame.phase;
    return count;
  }

  close(): void {
    if (!this.#open) return;
    this.#open = false;
    host.call("pulse.close", { pin: this.#pin });
  }
}
