// Runs the fleet benchmarks named on the command line (fleet, knee, backends); see fleet.ts.

import { backendsBenchmark, fleetBenchmark, kneeBenchmark } from "./fleet.ts";

const benchmarks: Record<string, () => Promise<void>> = {
  fleet: fleetBenchmark,
  knee: kneeBenchmark,
  backends: backendsBenchmark,
};

const names = process.argv.slice(2);
if (names.length === 0 || names.some((name) => !benchmarks[name])) {
  throw new Error(`name one or more benchmarks: ${Object.keys(benchmarks).join(", ")}`);
}
for (const name of names) await benchmarks[name]?.();
