// One-wire pulse capture (kestrel/pulse-capture) for the DHT22 driver. The ESP32 needs a native
// RMT-receive module for it, not in this build yet, so here opening one fails with a clear error and a
// configured DHT22 reports "unavailable"; the simulator maps sim/xs/pulse-capture in its place.

export default class PulseCapture {
  constructor(_options: { pin: number }) {
    throw new Error("no pulse capture on this platform (the DHT22 needs a native RMT module on the ESP32)");
  }

  get phase(): number {
    return 0;
  }

  capture(_startMs: number, _target: Uint16Array): number {
    return 0;
  }

  close(): void {}
}
