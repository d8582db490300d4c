// Runs the retention job on every replica once per lease slot; the lease makes
// only one of them delete.

import type { FastifyInstance } from "fastify";
import type { Db } from "mongodb";
import { RETENTION_SLOT_MS, RetentionJob } from "./retention-job.ts";

export async function retentionPlugin(app: FastifyInstance, options: { db: Db }): Promise<void> {
  const job = new RetentionJob(options.db, app.log);
  const timer = setInterval(() => {
    job.runOnce().catch((error: unknown) => app.log.error({ err: error }, "telemetry retention run failed"));
  }, RETENTION_SLOT_MS);
  timer.unref();
  app.addHook("onClose", async () => clearInterval(timer));
}
