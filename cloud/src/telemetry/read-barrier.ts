// Read-your-writes across the API: a GET under /api waits until telemetry this
// process has journalled is applied, so a device's latest sample and lastSeen
// (and every history read) include what this replica has acknowledged. A no-op
// when nothing was journalled since the last pass. Bounded: a read waits at
// most READ_BARRIER_MAX_MS, and not at all while applying runs behind (a round
// takes longer than LAGGING_ROUND_MS, as under a large fleet's load, where every
// read would otherwise wait a round): it then answers from what is applied, the
// apply lag behind. Health and the other public routes never wait.

import { setTimeout as sleep } from "node:timers/promises";
import type { FastifyInstance } from "fastify";
import fp from "fastify-plugin";
import type { Db } from "mongodb";
import { TelemetryStore } from "./telemetry-store.ts";

export const READ_BARRIER_MAX_MS = 1_000;
const LAGGING_ROUND_MS = 500;

async function readBarrier(app: FastifyInstance, options: { db: Db }): Promise<void> {
  const telemetry = new TelemetryStore(options.db);
  app.addHook("onRequest", async (request) => {
    const route = request.routeOptions;
    if (request.method !== "GET" || route.config.public === true || !route.url?.startsWith("/api/")) return;
    if (telemetry.lagging(LAGGING_ROUND_MS)) return;
    const waited = new AbortController();
    // A failed pass is logged by the applier; the read then goes to the database itself.
    await Promise.race([
      telemetry.settle().catch(() => undefined),
      sleep(READ_BARRIER_MAX_MS, undefined, { signal: waited.signal }).catch(() => undefined),
    ]);
    waited.abort();
  });
}

export const telemetryReadBarrierPlugin = fp(readBarrier, { name: "telemetry-read-barrier" });
