// Faulty on purpose (tests): on_sample reads past the end of its linear memory, which must trap.

import { Metric } from "../sdk/kestrel";

let leak!: Metric;

export function init(): i32 {
  leak = new Metric("leak");
  return 0;
}

export function on_sample(): void {
  const beyond = (<usize>memory.size() << 16) + 64;
  leak.emit(<f64>load<u32>(beyond));
}
