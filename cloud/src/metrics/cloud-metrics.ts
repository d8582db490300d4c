// The cloud's Prometheus metrics, on a registry of its own per app (tests build several apps in one
// process), served at /metrics by the metrics plugin. Names are `kestrel_cloud_*`, plus prom-client's
// process and Node.js metrics. Gauges that need the database are read when scraped (metrics plugin).

import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from "prom-client";

const LATENCY_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];
const DB_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5];
const LAG_BUCKETS = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300];
const LINT_FAILING_DEFAULTS = [
  "nodejs_active_handles_total",
  "nodejs_active_requests_total",
  "nodejs_active_resources_total",
];

export class CloudMetrics {
  readonly registry = new Registry();

  readonly httpDuration = new Histogram({
    name: "kestrel_cloud_http_request_duration_seconds",
    help: "HTTP requests by route (its pattern), method and status code",
    labelNames: ["method", "route", "status_code"],
    buckets: LATENCY_BUCKETS,
    registers: [this.registry],
  });

  readonly ingestSamples = new Counter({
    name: "kestrel_cloud_ingest_samples_total",
    help: "Telemetry samples accepted into the journal",
    registers: [this.registry],
  });

  readonly ingestRejected = new Counter({
    name: "kestrel_cloud_ingest_rejected_total",
    help: "Ingest items refused, by kind and code",
    labelNames: ["kind", "code"],
    registers: [this.registry],
  });

  readonly applyLag = new Histogram({
    name: "kestrel_cloud_ingest_apply_lag_seconds",
    help: "Time from a journal document's insert to its samples being applied (history, rollups, alerts)",
    buckets: LAG_BUCKETS,
    registers: [this.registry],
  });

  readonly mongoDuration = new Histogram({
    name: "kestrel_cloud_mongodb_operation_duration_seconds",
    help: "MongoDB commands by name and outcome",
    labelNames: ["command", "outcome"],
    buckets: DB_BUCKETS,
    registers: [this.registry],
  });

  readonly alertEvaluations = new Counter({
    name: "kestrel_cloud_alert_evaluations_total",
    help: "Alert rule evaluations, by rule kind",
    labelNames: ["kind"],
    registers: [this.registry],
  });

  readonly alertTransitions = new Counter({
    name: "kestrel_cloud_alert_transitions_total",
    help: "Alerts fired and resolved, by transition and whether a silence muted the notification",
    labelNames: ["transition", "silenced"],
    registers: [this.registry],
  });

  readonly alertEvaluationErrors = new Counter({
    name: "kestrel_cloud_alert_evaluation_errors_total",
    help: "Devices whose samples could not be evaluated in an apply pass after retries (their notifications are missed)",
    registers: [this.registry],
  });

  readonly alertLateSamples = new Counter({
    name: "kestrel_cloud_alert_late_samples_total",
    help: "Samples older than what a rule had already evaluated for the device: not evaluated",
    registers: [this.registry],
  });

  readonly eventsPublished = new Counter({
    name: "kestrel_cloud_events_published_total",
    help: "Domain events published, by type",
    labelNames: ["type"],
    registers: [this.registry],
  });

  readonly webhookDeliveries = new Counter({
    name: "kestrel_cloud_webhook_deliveries_total",
    help: "Webhook delivery attempts by outcome (success, failure), and deliveries dead-lettered (dead)",
    labelNames: ["outcome"],
    registers: [this.registry],
  });

  readonly webhookDuration = new Histogram({
    name: "kestrel_cloud_webhook_delivery_duration_seconds",
    help: "Webhook delivery attempts, from request to answer, by outcome",
    labelNames: ["outcome"],
    buckets: LATENCY_BUCKETS,
    registers: [this.registry],
  });

  constructor() {
    collectDefaultMetrics({ register: this.registry });
    // Gauges named like counters, which promtool's lint refuses; the per-type gauges without _total stay.
    for (const name of LINT_FAILING_DEFAULTS) this.registry.removeSingleMetric(name);
  }

  /** A gauge whose value is read when scraped. */
  gauge(name: string, help: string, read: () => Promise<number>): Gauge {
    return new Gauge({
      name,
      help,
      registers: [this.registry],
      async collect() {
        this.set(await read());
      },
    });
  }
}
