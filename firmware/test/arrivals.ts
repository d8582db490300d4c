// Telemetry as a test broker saw it, each reading once. Delivery is at least once: a batch whose
// telemetry ack the link dropped is sent again (the cloud keeps the first copy).

import assert from "node:assert/strict";
import type { TelemetrySample } from "@kestrel/wire";

export interface Delivered extends TelemetrySample {
  boot: number;
}

/** Each reading once, at its first arrival; a repeat must be the same reading. */
export function firstArrivals(samples: Delivered[]): Delivered[] {
  const seen = new Map<string, Delivered>();
  const first: Delivered[] = [];
  for (const sample of samples) {
    const key = `${sample.boot}-${sample.seq}`;
    const earlier = seen.get(key);
    if (earlier) assert.deepEqual(sample, earlier, `a repeat of ${key} is the same reading`);
    else {
      seen.set(key, sample);
      first.push(sample);
    }
  }
  return first;
}
