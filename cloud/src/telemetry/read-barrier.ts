// Read-your-writes across the API: a GET waits until telemetry this process
// has journalled is applied, so a device's latest sample and lastSeen (and
// every history read) include what this replica has acknowledged. A no-op when
// nothing was journalled since the last pass.

import type { FastifyInstance } from "fastify";
import fp from "fastify-plugin";
import type { Db } from "mongodb";
import { TelemetryStore } from "./telemetry-store.ts";

async function readBarrier(app: FastifyInstance, options: { db: Db }): Promise<void> {
  const telemetry = new TelemetryStore(options.db);
  app.addHook("onRequest", async (request) => {
    if (request.method === "GET") await telemetry.settle();
  });
}

export const telemetryReadBarrierPlugin = fp(readBarrier, { name: "telemetry-read-barrier" });
