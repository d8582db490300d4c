// Read-your-writes across the API: a GET under /api waits until telemetry this
// process has journalled is applied, so a device's latest sample and lastSeen
// (and every history read) include what this replica has acknowledged. A no-op
// when nothing was journalled since the last pass; bounded, as every read of
// the telemetry store is (TelemetryStore.settleForRead). Health and the other
// public routes never wait.

import type { FastifyInstance } from "fastify";
import fp from "fastify-plugin";
import type { Db } from "mongodb";
import { TelemetryStore } from "./telemetry-store.ts";

async function readBarrier(app: FastifyInstance, options: { db: Db }): Promise<void> {
  const telemetry = new TelemetryStore(options.db);
  app.addHook("onRequest", async (request) => {
    const route = request.routeOptions;
    if (request.method !== "GET" || route.config.public === true || !route.url?.startsWith("/api/")) return;
    await telemetry.settleForRead();
  });
}

export const telemetryReadBarrierPlugin = fp(readBarrier, { name: "telemetry-read-barrier" });
