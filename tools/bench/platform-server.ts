// The platform (`make run` without simulated devices) in a process of its own, for the fleet
// benchmarks: prints one JSON line with where to reach it once it runs, and stops on SIGTERM.
// FERRETDB_BACKEND chooses the embedded store; DATA_DIR where it keeps its data.

import { pino } from "pino";
import { startPlatform } from "../src/platform.ts";

const dataDir = process.env.DATA_DIR;
if (!dataDir) throw new Error("DATA_DIR must be set");
const platform = await startPlatform({
  dataDir,
  deviceCount: 0,
  logger: pino({ level: process.env.LOG_LEVEL || "error" }),
});
process.stdout.write(
  `${JSON.stringify({
    cloudUrl: platform.cloudUrl,
    mqttUrl: platform.mqttUrl,
    ca: platform.tls.ca,
    admin: platform.credentials.admin,
    databasePid: platform.databasePid,
    gatewayHttpPort: platform.gateway.httpPort,
  })}\n`,
);
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.once(signal, () => {
    platform.stop().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  });
}
