// Counters and gauges the gateway keeps about itself, rendered in the
// Prometheus text format by the health server.

type Labels = Record<string, string>;

interface Series {
  help: string;
  type: "counter" | "gauge";
  values: Map<string, number>;
}

function labelKey(labels: Labels): string {
  const names = Object.keys(labels).sort();
  return names.map((name) => `${name}="${String(labels[name]).replace(/["\\\n]/g, "_")}"`).join(",");
}

export class GatewayMetrics {
  private readonly series = new Map<string, Series>();

  constructor() {
    this.define(
      "kestrel_gateway_connections_total",
      "counter",
      "MQTT clients that authenticated, by means (token, certificate)",
    );
    this.define("kestrel_gateway_auth_failures_total", "counter", "MQTT connections refused, by reason");
    this.define(
      "kestrel_gateway_auth_stale_admissions_total",
      "counter",
      "devices let in on an earlier verdict of the cloud, because the cloud could not answer",
    );
    this.define("kestrel_gateway_messages_in_total", "counter", "MQTT messages accepted from devices, by kind");
    this.define("kestrel_gateway_messages_rejected_total", "counter", "MQTT messages refused or dropped, by reason");
    this.define(
      "kestrel_gateway_acl_denials_total",
      "counter",
      "publish or subscribe attempts outside a device's topics",
    );
    this.define(
      "kestrel_gateway_forwarded_items_total",
      "counter",
      "telemetry batches and states delivered to the cloud",
    );
    this.define("kestrel_gateway_forward_failures_total", "counter", "failed attempts to deliver to the cloud");
    this.define("kestrel_gateway_messages_out_total", "counter", "messages delivered to the cloud, by kind");
    this.define(
      "kestrel_gateway_queue_refused_total",
      "counter",
      "publishes refused because the uplink queue was full",
    );
    this.define("kestrel_gateway_commands_published_total", "counter", "commands from the cloud published to devices");
    this.define(
      "kestrel_gateway_telemetry_acks_published_total",
      "counter",
      "telemetry acks published to devices once their batch was durable",
    );
    this.define("kestrel_gateway_command_acks_relayed_total", "counter", "device command acks delivered to the cloud");
    this.define("kestrel_gateway_command_acks_dropped_total", "counter", "device command acks given up on");
    this.define("kestrel_gateway_downlink_failures_total", "counter", "failed command polls, publishes and ack relays");
    this.define("kestrel_gateway_connected_clients", "gauge", "MQTT clients connected now");
    this.define("kestrel_gateway_queue_depth", "gauge", "items waiting to be delivered to the cloud");
    this.define("kestrel_gateway_queue_bytes", "gauge", "bytes of the on-disk uplink queue");
    this.define(
      "kestrel_gateway_queue_oldest_age_seconds",
      "gauge",
      "age of the oldest item waiting to be delivered to the cloud",
    );
    this.define("process_resident_memory_bytes", "gauge", "resident set size of the gateway process");
    this.define("nodejs_heap_used_bytes", "gauge", "V8 heap in use");
  }

  private define(name: string, type: Series["type"], help: string): void {
    this.series.set(name, { help, type, values: new Map() });
  }

  private get(name: string): Series {
    const series = this.series.get(name);
    if (!series) throw new Error(`metric ${name} is not defined`);
    return series;
  }

  inc(name: string, labels: Labels = {}, by = 1): void {
    const values = this.get(name).values;
    const key = labelKey(labels);
    values.set(key, (values.get(key) ?? 0) + by);
  }

  set(name: string, value: number, labels: Labels = {}): void {
    this.get(name).values.set(labelKey(labels), value);
  }

  /** Current value of one series (0 when never touched). */
  value(name: string, labels: Labels = {}): number {
    return this.get(name).values.get(labelKey(labels)) ?? 0;
  }

  render(): string {
    const lines: string[] = [];
    for (const [name, series] of this.series) {
      lines.push(`# HELP ${name} ${series.help}`, `# TYPE ${name} ${series.type}`);
      if (series.values.size === 0) lines.push(`${name} 0`);
      for (const [key, value] of series.values) lines.push(key ? `${name}{${key}} ${value}` : `${name} ${value}`);
    }
    return `${lines.join("\n")}\n`;
  }
}
