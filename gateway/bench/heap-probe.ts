// Loaded into the gateway process by the memory benchmark (node --expose-gc --import): on SIGUSR2 it
// runs a full collection and writes the live heap, in bytes, to the file named by HEAP_PROBE_FILE,
// so the benchmark reads what the gateway keeps rather than what it has not collected yet.

import { writeFileSync } from "node:fs";

const file = process.env.HEAP_PROBE_FILE;
const gc = (globalThis as { gc?: () => void }).gc;
if (file && gc) {
  process.on("SIGUSR2", () => {
    gc();
    writeFileSync(file, String(process.memoryUsage().heapUsed));
  });
}
