// Faulty on purpose (tests): on_sample never returns. The execution budget must stop it.

import { now } from "../sdk/kestrel";

export function init(): i32 {
  return 0;
}

export function on_sample(): void {
  let x = now();
  // x == x holds for every number the loop can reach (NaN never appears), so it never ends.
  while (x === x) x = x * 1.0000001 + 1;
}
