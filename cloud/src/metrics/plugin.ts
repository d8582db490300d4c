// GET /metrics in the Prometheus text format (prom-client): HTTP latency by route and status, the
// MongoDB driver's commands, and gauges read from the database when scraped (journal depth and
// age, open alerts, webhook queue, devices online). With OPS_TOKEN set, scrapes need it as a
// bearer token. Other capabilities count into `app.metrics`.

import { timingSafeEqual } from "node:crypto";
import type { FastifyInstance } from "fastify";
import fp from "fastify-plugin";
import type { CommandFailedEvent, CommandSucceededEvent, Db } from "mongodb";
import { bearerToken } from "../http/bearer.ts";
import { sendProblem } from "../http/problem.ts";
import { CloudMetrics } from "./cloud-metrics.ts";

declare module "fastify" {
  interface FastifyInstance {
    metrics: CloudMetrics;
  }
}

export interface MetricsOptions {
  db: Db;
  /** Required from scrapers as `Authorization: Bearer <token>` when set. */
  token: string | undefined;
}

/** Collections a scrape counts: small by design (queues, not histories). */
function scrapeGauges(metrics: CloudMetrics, db: Db): void {
  const journal = db.collection<{ _id: { getTimestamp(): Date } }>("telemetry_journal");
  const pending = db.collection<{ queuedAt: number }>("webhook_pending");
  metrics.gauge(
    "kestrel_cloud_telemetry_journal_depth",
    "Journal documents (ingest requests) waiting to be applied",
    () => journal.estimatedDocumentCount(),
  );
  metrics.gauge(
    "kestrel_cloud_telemetry_journal_oldest_age_seconds",
    "Age of the oldest journal document waiting to be applied (0 when none)",
    async () => {
      const oldest = await journal.find({}).sort({ _id: 1 }).limit(1).next();
      return oldest ? Math.max(0, (Date.now() - oldest._id.getTimestamp().getTime()) / 1000) : 0;
    },
  );
  metrics.gauge("kestrel_cloud_alerts_firing", "Alerts open (firing or acknowledged), all organizations", () =>
    db.collection("alerts").countDocuments({ resolvedAt: null }),
  );
  metrics.gauge("kestrel_cloud_webhook_queue_depth", "Webhook deliveries queued (pending or retrying)", () =>
    pending.estimatedDocumentCount(),
  );
  metrics.gauge(
    "kestrel_cloud_webhook_queue_oldest_age_seconds",
    "Age of the oldest queued webhook delivery (0 when none)",
    async () => {
      const oldest = await pending.find({}).sort({ queuedAt: 1 }).limit(1).next();
      return oldest ? Math.max(0, (Date.now() - oldest.queuedAt) / 1000) : 0;
    },
  );
  metrics.gauge("kestrel_cloud_devices_online", "Devices whose last reported state is online", () =>
    db.collection("devices").countDocuments({ online: true }),
  );
}

function tokenMatches(given: string | undefined, expected: string): boolean {
  const a = Buffer.from(given ?? "");
  const b = Buffer.from(expected);
  return a.length === b.length && timingSafeEqual(a, b);
}

async function metricsPlugin(app: FastifyInstance, options: MetricsOptions): Promise<void> {
  const metrics = new CloudMetrics();
  app.decorate("metrics", metrics);
  scrapeGauges(metrics, options.db);

  app.addHook("onResponse", async (request, reply) => {
    // The route's pattern, never the raw URL: ids in paths would make a series per device.
    const route = request.routeOptions.url ?? "unmatched";
    metrics.httpDuration.observe(
      { method: request.method, route, status_code: String(reply.statusCode) },
      reply.elapsedTime / 1000,
    );
  });

  const client = options.db.client;
  const succeeded = (event: CommandSucceededEvent) =>
    metrics.mongoDuration.observe({ command: event.commandName, outcome: "ok" }, event.duration / 1000);
  const failed = (event: CommandFailedEvent) =>
    metrics.mongoDuration.observe({ command: event.commandName, outcome: "error" }, event.duration / 1000);
  client.on("commandSucceeded", succeeded);
  client.on("commandFailed", failed);
  app.addHook("onClose", async () => {
    client.off("commandSucceeded", succeeded);
    client.off("commandFailed", failed);
  });

  app.get("/metrics", { schema: { hide: true } }, async (request, reply) => {
    if (options.token !== undefined && !tokenMatches(bearerToken(request), options.token)) {
      return sendProblem(reply, 401, "unauthenticated", "this metrics endpoint needs its bearer token");
    }
    return reply.type(metrics.registry.contentType).send(await metrics.registry.metrics());
  });
}

export const cloudMetricsPlugin = fp(metricsPlugin, { name: "metrics" });
