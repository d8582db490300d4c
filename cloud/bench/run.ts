// Runs the cloud benchmarks named on the command line, or all of them.

import { alertsBenchmark } from "./alerts.ts";
import { devicesBenchmark } from "./devices.ts";
import { historyBenchmark } from "./history.ts";
import { ingestBenchmark } from "./ingest.ts";

const benchmarks: Record<string, () => Promise<void>> = {
  ingest: ingestBenchmark,
  history: historyBenchmark,
  devices: devicesBenchmark,
  alerts: alertsBenchmark,
  // export.ts runs when imported.
  export: async () => {
    await import("./export.ts");
  },
};

const names = process.argv.slice(2);
for (const name of names)
  if (!benchmarks[name]) throw new Error(`unknown benchmark ${name}; known: ${Object.keys(benchmarks).join(", ")}`);
for (const name of names.length > 0 ? names : Object.keys(benchmarks)) await benchmarks[name]?.();
