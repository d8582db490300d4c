// Counters, gauges and histograms the gateway keeps about itself, on a prom-client registry of its
// own (tests run several gateways in one process), served at /metrics by the health server.
// Call sites name a metric and its labels; every metric and its label names are declared here.

import { Counter, collectDefaultMetrics, Gauge, Histogram, type Metric, Registry } from "prom-client";

type Labels = Record<string, string>;

const LINT_FAILING_DEFAULTS = [
  "nodejs_active_handles_total",
  "nodejs_active_requests_total",
  "nodejs_active_resources_total",
];

const COUNTERS: Record<string, [help: string, labels: string[]]> = {
  kestrel_gateway_connections_total: ["MQTT clients that authenticated, by means (token, certificate)", ["auth"]],
  kestrel_gateway_auth_failures_total: ["MQTT connections refused, by reason", ["reason"]],
  kestrel_gateway_auth_stale_admissions_total: [
    "devices let in on an earlier verdict of the cloud, because the cloud could not answer",
    [],
  ],
  kestrel_gateway_messages_in_total: ["MQTT messages accepted from devices, by kind", ["kind"]],
  kestrel_gateway_messages_rejected_total: ["MQTT messages refused or dropped, by reason", ["reason"]],
  kestrel_gateway_acl_denials_total: ["publish or subscribe attempts outside a device's topics", ["action"]],
  kestrel_gateway_forwarded_items_total: ["telemetry batches and states delivered to the cloud", []],
  kestrel_gateway_forward_failures_total: ["failed attempts to deliver to the cloud", []],
  kestrel_gateway_messages_out_total: ["messages delivered to the cloud, by kind", ["kind"]],
  kestrel_gateway_queue_refused_total: ["publishes refused because the uplink queue was full", []],
  kestrel_gateway_commands_published_total: ["commands from the cloud published to devices", []],
  kestrel_gateway_telemetry_acks_published_total: [
    "telemetry acks published to devices once their batch was durable",
    [],
  ],
  kestrel_gateway_command_acks_relayed_total: ["device command acks delivered to the cloud", []],
  kestrel_gateway_command_acks_dropped_total: ["device command acks given up on", []],
  kestrel_gateway_downlink_failures_total: ["failed command polls, publishes and ack relays", ["operation"]],
  kestrel_gateway_uplink_reports_failed_total: ["reports of the uplink's progress the cloud did not take", []],
  kestrel_gateway_artifact_offers_published_total: ["artifact offers from the cloud published to devices", []],
  kestrel_gateway_artifact_reports_relayed_total: ["device artifact reports delivered to the cloud", []],
  kestrel_gateway_artifact_reports_dropped_total: ["device artifact reports given up on", []],
  kestrel_gateway_artifact_fetches_total: [
    "artifact downloads from the cloud into the cache, by whether they resumed a cut one",
    ["resumed"],
  ],
  kestrel_gateway_artifact_fetch_failures_total: ["artifact downloads that failed, by code", ["code"]],
  kestrel_gateway_artifact_upstream_bytes_total: ["artifact bytes downloaded from the cloud", []],
  kestrel_gateway_artifact_cache_requests_total: [
    "device chunk requests, by whether the artifact was in the cache already (hit) or had to come from the cloud (miss)",
    ["result"],
  ],
  kestrel_gateway_artifact_chunks_served_total: ["artifact chunks sent to devices", []],
  kestrel_gateway_artifact_bytes_served_total: ["artifact bytes sent to devices", []],
  kestrel_gateway_artifact_refusals_total: [
    "chunk requests answered without data, by chunk status (1 not found, 2 bad range, 3 busy, 4 unavailable)",
    ["status"],
  ],
  kestrel_gateway_artifact_evictions_total: ["artifacts evicted from the cache", []],
};

const GAUGES: Record<string, string> = {
  kestrel_gateway_connected_clients: "MQTT clients connected now",
  kestrel_gateway_queue_depth: "items waiting to be delivered to the cloud",
  kestrel_gateway_queue_bytes: "bytes of the on-disk uplink queue",
  kestrel_gateway_queue_oldest_age_seconds: "age of the oldest item waiting to be delivered to the cloud",
  kestrel_gateway_artifact_cache_bytes: "bytes of artifacts in the cache",
  kestrel_gateway_artifact_downloads_active: "devices downloading an artifact now",
};

/**
 * One series of a counter, bound once by a path that counts every message: an increment adds to a
 * number, handed to prom-client when the counter is read (a scrape, or value()). prom-client hashes
 * the labels on every inc, which cost more than the rest of the counting.
 */
export class CounterSeries {
  pending = 0;
  constructor(readonly labels: Labels) {}

  inc(by = 1): void {
    this.pending += by;
  }
}

export class GatewayMetrics {
  readonly registry = new Registry();
  private readonly metrics = new Map<string, Counter | Gauge>();
  /** Bound series by metric name, then by their labels' JSON. */
  private readonly series = new Map<string, Map<string, CounterSeries>>();
  /** One uplink request to the cloud, by outcome (ok, retry, dropped). */
  readonly forwardDuration = new Histogram({
    name: "kestrel_gateway_forward_duration_seconds",
    help: "Uplink requests to the cloud's ingest, from send to answer, by outcome",
    labelNames: ["outcome"],
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [this.registry],
  });

  constructor() {
    collectDefaultMetrics({ register: this.registry });
    // Gauges named like counters, which promtool's lint refuses; the per-type gauges without _total stay.
    for (const name of LINT_FAILING_DEFAULTS) this.registry.removeSingleMetric(name);
    for (const [name, [help, labelNames]] of Object.entries(COUNTERS)) {
      const bound = new Map<string, CounterSeries>();
      this.series.set(name, bound);
      const collect = function (this: Counter) {
        for (const series of bound.values()) {
          if (series.pending > 0) this.inc(series.labels, series.pending);
          series.pending = 0;
        }
      };
      this.metrics.set(name, new Counter({ name, help, labelNames, registers: [this.registry], collect }));
    }
    for (const [name, help] of Object.entries(GAUGES)) {
      this.metrics.set(name, new Gauge({ name, help, registers: [this.registry] }));
    }
    // The name the hand-written renderer had (the memory benchmark reads it); prom-client's own is nodejs_heap_size_used_bytes.
    new Gauge({
      name: "nodejs_heap_used_bytes",
      help: "V8 heap in use",
      registers: [this.registry],
      collect() {
        this.set(process.memoryUsage().heapUsed);
      },
    });
  }

  private get(name: string): Counter | Gauge {
    const metric = this.metrics.get(name);
    if (!metric) throw new Error(`metric ${name} is not defined`);
    return metric;
  }

  /** The series of a counter with these labels, to count on a hot path (see CounterSeries). */
  counter(name: string, labels: Labels = {}): CounterSeries {
    const bound = this.series.get(name);
    if (!bound) throw new Error(`metric ${name} is not a counter`);
    const key = JSON.stringify(labels);
    let series = bound.get(key);
    if (!series) {
      // Checked here, not when prom-client is handed the count at a scrape.
      const declared = COUNTERS[name]?.[1] ?? [];
      const given = Object.keys(labels);
      if (given.length !== declared.length || !given.every((label) => declared.includes(label))) {
        throw new Error(
          `metric ${name} has labels ${declared.join(", ") || "none"}, not ${given.join(", ") || "none"}`,
        );
      }
      series = new CounterSeries(labels);
      bound.set(key, series);
    }
    return series;
  }

  inc(name: string, labels: Labels = {}, by = 1): void {
    this.get(name).inc(labels, by);
  }

  set(name: string, value: number, labels: Labels = {}): void {
    const metric = this.get(name);
    if (!(metric instanceof Gauge)) throw new Error(`metric ${name} is not a gauge`);
    metric.set(labels, value);
  }

  /** Current value of one series (0 when never touched). */
  async value(name: string, labels: Labels = {}): Promise<number> {
    const { values } = await (this.get(name) as Metric).get();
    const wanted = Object.entries(labels);
    const series = values.find(
      (entry) =>
        Object.keys(entry.labels).length === wanted.length &&
        wanted.every(([key, value]) => entry.labels[key] === value),
    );
    return series?.value ?? 0;
  }

  /** The Prometheus text format. */
  render(): Promise<string> {
    return this.registry.metrics();
  }
}
