// Command-line entry: configuration from the environment, JSON logs to stdout,
// clean shutdown on SIGINT/SIGTERM.

import { pino } from "pino";
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

const logger = pino({ level: config.logLevel, base: { service: "gateway" } });
const gateway = await startGateway(config, logger);

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
