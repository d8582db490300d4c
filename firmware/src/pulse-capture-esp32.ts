// kestrel/pulse-capture on the ESP32: the DHT22's level durations timed by the RMT receiver in
// esp32/pulse-capture/pulse-capture.c. The host object owns one RMT RX channel and the pin until
// close() (or garbage collection, through the native destructor). XS's `Native`/`native` API binds
// the C functions instead of the `@` syntax, which tsc cannot parse; xsc compiles both the same way.
// The simulator maps sim/xs/pulse-capture in its place.

export default class PulseCapture extends Native("xs_pulse_capture_destructor") {
  constructor(options: { pin: number }) {
    super();
    // Checked here too so a bad configuration fails with the simulator's message.
    if (!Number.isInteger(options.pin)) throw new RangeError("invalid pin");
    native("xs_pulse_capture").call(this, options.pin);
  }

  /** Level (0 or 1) of target[0] after the last capture. */
  get phase(): number {
    return native("xs_pulse_capture_get_phase").call(this) as number;
  }

  /** Pulls the line low for startMs, releases it and fills target with level durations in µs. */
  capture(startMs: number, target: Uint16Array): number {
    return native("xs_pulse_capture_capture").call(this, startMs, target) as number;
  }

  close(): void {
    native("xs_pulse_capture_close").call(this);
  }
}
