// Command-line entry of the cloud API: configuration from the environment,
// JSON logs to stdout, clean shutdown on SIGINT/SIGTERM.

import type { FastifyInstance } from "fastify";
import { buildApp } from "./app.ts";
import { type CloudConfig, ConfigError, loadConfig } from "./config.ts";
import { createLogger } from "./observability/logger.ts";
import { openDatabase } from "./storage/open.ts";

let config: CloudConfig;
try {
  config = loadConfig();
} catch (error) {
  if (error instanceof ConfigError) {
    process.stderr.write(`cloud: ${error.message}\n`);
    process.exit(2);
  }
  throw error;
}

const logger = createLogger({ service: "cloud", level: config.logLevel });
const database = await openDatabase(config, logger);
let app: FastifyInstance;
try {
  app = await buildApp({ db: database.db, logger, config });
  await app.listen({ port: config.port, host: config.host });
} catch (error) {
  logger.fatal({ err: error }, "cloud did not start");
  await database.close();
  process.exit(1);
}

// An error nothing handled: logged and reported (when SENTRY_DSN is set), then the process stops,
// as its state is unknown; the orchestrator starts it again.
for (const origin of ["uncaughtException", "unhandledRejection"] as const) {
  process.on(origin, (error: unknown) => {
    logger.fatal({ err: error, origin }, "unhandled error");
    app.errorTracker?.capture(error);
    void (app.errorTracker?.flush() ?? Promise.resolve()).finally(() => process.exit(1));
  });
}

/** The longest a stop may take. */
const STOP_DEADLINE_MS = 10_000;
let stopping = false;
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.on(signal, () => {
    // A second signal, or a stop past its deadline (a hung dependency), exits at once.
    if (stopping) process.exit(130);
    stopping = true;
    setTimeout(() => process.exit(1), STOP_DEADLINE_MS).unref();
    app
      .close()
      .then(() => database.close())
      .then(
        () => process.exit(0),
        (error: unknown) => {
          logger.error({ err: error }, "cloud did not stop cleanly");
          process.exit(1);
        },
      );
  });
}
