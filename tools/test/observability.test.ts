// The observability manifests against the real thing: promtool checks and unit-tests the alerting
// rules and the example Prometheus config; every metric the rules and the Grafana dashboard use is
// one the real cloud or gateway exports; and the gateway-backlog rule fires on what a real gateway
// reports while the cloud is down (scraped values fed to promtool's rule engine).

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import type { Gateway } from "@kestrel/gateway";
import { connectAsync, type MqttClient } from "mqtt";
import type { RealCloud } from "../../gateway/test/real-cloud.ts";
import { cloudBehindGateway, tempDir, until } from "./helpers.ts";

const MANIFESTS = join(import.meta.dirname, "..", "..", "manifests", "observability");
const RULES = join(MANIFESTS, "prometheus-rules.yml");

function promtool(...args: string[]): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn("promtool", args, { cwd: MANIFESTS });
    let output = "";
    child.stdout.on("data", (chunk: Buffer) => {
      output += chunk;
    });
    child.stderr.on("data", (chunk: Buffer) => {
      output += chunk;
    });
    child.once("error", reject);
    child.once("close", (code) => resolve({ code, output }));
  });
}

/** Metric names a PromQL expression reads (histogram series by their family name). */
function metricNames(expr: string): string[] {
  const names = expr.match(/\b(?:kestrel|process|nodejs)_[a-z0-9_]+/g) ?? [];
  return names.map((name) => name.replace(/_(bucket|count|sum)$/, ""));
}

async function exported(url: string): Promise<Set<string>> {
  const text = await (await fetch(url)).text();
  return new Set([...text.matchAll(/^# TYPE (\S+) /gm)].map((match) => match[1] ?? ""));
}

describe("observability manifests", () => {
  let cloud: RealCloud;
  let gateway: Gateway;
  let stop: () => Promise<void>;
  let device: MqttClient | undefined;

  before(async () => {
    ({ cloud, gateway, stop } = await cloudBehindGateway("observability", ["obs-1"]));
  });
  after(async () => {
    await device?.endAsync();
    await stop?.();
  });

  test("promtool: the rules are valid and their unit tests pass; the example config is valid", async () => {
    for (const args of [
      ["check", "rules", "prometheus-rules.yml"],
      ["test", "rules", "prometheus-rules.test.yml"],
      ["check", "config", "prometheus.yml"],
    ]) {
      const { code, output } = await promtool(...args);
      assert.equal(code, 0, `promtool ${args.join(" ")}: ${output}`);
    }
  });

  test("every metric the rules and the dashboard read is exported by the cloud or the gateway", async () => {
    const names = new Set([
      ...(await exported(`${cloud.url}/metrics`)),
      ...(await exported(`http://127.0.0.1:${gateway.httpPort}/metrics`)),
    ]);
    const rules = await readFile(RULES, "utf8");
    const dashboard = JSON.parse(await readFile(join(MANIFESTS, "grafana-dashboard.json"), "utf8")) as {
      uid: string;
      panels: Array<{ id: number; title: string; targets: Array<{ expr: string }> }>;
    };
    const used = [
      ...metricNames(rules),
      ...dashboard.panels.flatMap((panel) => panel.targets.flatMap((target) => metricNames(target.expr))),
    ];
    assert.ok(used.length > 20);
    assert.deepEqual([...new Set(used.filter((name) => !names.has(name)))], [], "read but never exported");
    assert.equal(new Set(dashboard.panels.map((panel) => panel.id)).size, dashboard.panels.length);
    assert.ok(dashboard.panels.every((panel) => panel.targets.length > 0 && panel.title));
  });

  test("while the cloud is down, the gateway's backlog fires KestrelGatewayUplinkBacklog", async () => {
    const [credentials] = cloud.credentials.devices;
    assert.ok(credentials);
    // Connected while the cloud is up: the gateway checks the token with the cloud, then caches it.
    device = await connectAsync(`mqtt://127.0.0.1:${gateway.mqttPort}`, {
      clientId: credentials.deviceId,
      username: credentials.deviceId,
      password: credentials.token,
      reconnectPeriod: 0,
    });
    await cloud.halt();
    const ts = Date.now();
    const messages = 1200;
    await Promise.all(
      Array.from({ length: messages }, (_, seq) =>
        device?.publishAsync(
          `d/${credentials.deviceId}/telemetry`,
          JSON.stringify({ v: 1, boot: 1, samples: [{ seq, ts: ts - 60_000 + seq, m: { temperature: 21 } }] }),
          { qos: 1 },
        ),
      ),
    );
    const depth = async () => {
      const text = await (await fetch(`http://127.0.0.1:${gateway.httpPort}/metrics`)).text();
      return Number(/^kestrel_gateway_queue_depth (\d+)$/m.exec(text)?.[1]);
    };
    // Scrapes of the real gateway, one per second, stand for one a minute in the rule's time.
    const scrapes: number[] = [];
    for (let i = 0; i < 7; i++) {
      scrapes.push(await depth());
      await new Promise((resolve) => setTimeout(resolve, 1000));
    }
    assert.ok(
      scrapes.every((value) => value >= messages),
      `the backlog stays: ${scrapes}`,
    );
    await cloud.resume();
    await until(async () => ((await depth()) === 0 ? true : undefined), "the backlog drained", 60_000);
    scrapes.push(await depth(), await depth());

    const dir = await tempDir("promtool");
    const series = 'kestrel_gateway_queue_depth{job="kestrel-gateway",instance="site-1:8081"}';
    const last = scrapes[6];
    const unitTest = [
      `rule_files: [${JSON.stringify(RULES)}]`,
      "evaluation_interval: 1m",
      "tests:",
      "  - interval: 1m",
      "    input_series:",
      `      - series: '${series}'`,
      `        values: "${scrapes.join(" ")}"`,
      "    alert_rule_test:",
      "      - { eval_time: 4m, alertname: KestrelGatewayUplinkBacklog, exp_alerts: [] }",
      "      - eval_time: 6m",
      "        alertname: KestrelGatewayUplinkBacklog",
      "        exp_alerts:",
      "          - exp_labels: { severity: warning, job: kestrel-gateway, instance: 'site-1:8081' }",
      "            exp_annotations:",
      `              summary: "Gateway site-1:8081 holds ${last} items it could not deliver"`,
      '              description: "The uplink to the cloud is down or too slow; the queue is on disk, nothing is lost yet."',
      "      - { eval_time: 8m, alertname: KestrelGatewayUplinkBacklog, exp_alerts: [] }",
      "",
    ].join("\n");
    await writeFile(join(dir, "backlog.test.yml"), unitTest);
    const { code, output } = await promtool("test", "rules", join(dir, "backlog.test.yml"));
    assert.equal(code, 0, output);
  });
});
