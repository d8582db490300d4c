// Faulty on purpose (tests): on_sample recurses without end; the stack limits must stop it.

import { Metric, now } from "../sdk/kestrel";

let depth!: Metric;

export function init(): i32 {
  depth = new Metric("depth");
  return 0;
}

function down(n: f64): f64 {
  // The host's now() keeps the optimizer from turning the recursion into a loop.
  return n > 1e9 ? n : down(n + (now() > 0 ? 1 : 2)) + 1;
}

export function on_sample(): void {
  depth.emit(down(1));
}
