// Command-line entry: configuration from the environment, JSON logs to stdout,
// clean shutdown on SIGINT/SIGTERM. With GATEWAY_WORKERS > 1 this process is the
// primary of a cluster and the same entry runs in every worker (cluster.ts).

import cluster from "node:cluster";
import { pino } from "pino";
import { startGatewayCluster, startGatewayWorker } from "./cluster.ts";
import { ConfigError, loadGatewayConfig } from "./config.ts";
import { startGateway } from "./gateway.ts";

let config: ReturnType<typeof loadGatewayConfig>;
try {
  config = loadGatewayConfig();
} catch (error) {
  if (error instanceof ConfigError) {
    process.stderr.write(`gateway: ${error.message}\n`);
    process.exit(2);
  }
  throw error;
}

// Device tokens and the gateway key never reach a log line, whatever object carries them.
const SECRET_FIELDS = ["password", "token", "gatewayKey", "authorization"];
const logger = pino({
  level: config.logLevel,
  base: { service: "gateway" },
  redact: { paths: SECRET_FIELDS.flatMap((field) => [field, `*.${field}`, `*.*.${field}`]), censor: "[redacted]" },
});
const gateway = cluster.isWorker
  ? await startGatewayWorker(config, logger)
  : config.workers > 1
    ? await startGatewayCluster(config, logger)
    : await startGateway(config, logger);

/** The longest a stop may take. */
const STOP_DEADLINE_MS = 10_000;
let stopping = false;
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.on(signal, () => {
    // A second signal, or a stop past its deadline (a hung dependency), exits at once.
    if (stopping) process.exit(130);
    stopping = true;
    setTimeout(() => process.exit(1), STOP_DEADLINE_MS).unref();
    gateway.stop().then(
      () => process.exit(0),
      (error: unknown) => {
        logger.error({ err: error }, "gateway did not stop cleanly");
        process.exit(1);
      },
    );
  });
}
