// The cloud API alone in its own process, as deployed: the export benchmark reads this process's
// memory without the load generator's, the ingest benchmark gives it a core of its own. Started by
// startCloudProcess (processes.ts); prints `ready <port>` when listening; stops on SIGTERM.
// On SIGUSR2 it prints `heap <full GCs> <max heap used after one> <heap used after a forced full GC>`
// (bytes, since the previous SIGUSR2): what the process keeps, apart from garbage not yet collected.

import { constants, PerformanceObserver } from "node:perf_hooks";
import { buildApp } from "../src/app.ts";
import { loadConfig } from "../src/config.ts";
import { connectDb } from "../src/storage/connect.ts";

const uri = process.env.BENCH_MONGODB_URI as string;
// BENCH_CLOUD_ENV: more configuration as JSON (replicas sharing SECRETS_KEY, webhook allow-lists).
const config = loadConfig({
  PORT: "0",
  LOG_LEVEL: "silent",
  EXPORT_SCHEDULER: "off",
  ...(JSON.parse(process.env.BENCH_CLOUD_ENV ?? "{}") as Record<string, string>),
});
const database = await connectDb(uri, process.env.BENCH_MONGODB_DB as string);
const app = await buildApp({ db: database.db, config });
await app.listen({ port: 0, host: "127.0.0.1" });
const address = app.server.address();
process.stdout.write(`ready ${typeof address === "object" && address ? address.port : 0}\n`);
let fullGcs = 0;
let maxAfterFullGc = 0;
/** The forced collections' entries arrive after their report: not counted. */
let forced = 0;
new PerformanceObserver((list) => {
  for (const entry of list.getEntries()) {
    const { detail } = entry as PerformanceEntry & { detail?: { kind?: number } };
    if (detail?.kind !== constants.NODE_PERFORMANCE_GC_MAJOR) continue;
    if (forced > 0) {
      forced--;
      continue;
    }
    fullGcs++;
    maxAfterFullGc = Math.max(maxAfterFullGc, process.memoryUsage().heapUsed);
  }
}).observe({ entryTypes: ["gc"] });
process.on("SIGUSR2", () => {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (gc) {
    forced++;
    gc();
  }
  process.stdout.write(`heap ${fullGcs} ${maxAfterFullGc} ${process.memoryUsage().heapUsed}\n`);
  fullGcs = 0;
  maxAfterFullGc = 0;
});
process.on("SIGTERM", () => {
  app
    .close()
    .then(() => database.close())
    .then(() => process.exit(0));
});
