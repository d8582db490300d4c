// A gateway of several processes (GATEWAY_WORKERS=2), run as `npm start` runs it: devices spread
// over the workers, one /healthz and /metrics for all of them, a device's new connection takes over
// its old one held by the other worker, and queues of workers no longer running are drained.

import assert from "node:assert/strict";
import { existsSync, rmSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { connectAsync, type IClientOptions, type MqttClient } from "mqtt";
import { mergeWorkerMetrics } from "../src/cluster.ts";
import { type CloudPeer, startCloudPeer } from "./cloud-peer.ts";
import { freePort, GatewayProcess, tempDir } from "./real-cloud.ts";
import { until } from "./until.ts";

const DEVICES = Object.fromEntries(Array.from({ length: 6 }, (_, i) => [`wk-${i}`, `token-wk-${i}`]));

/** A device's artifact status report (d/{id}/artifact/status). */
function artifactStatus(bytes: number): string {
  return JSON.stringify({
    v: 1,
    campaign: "cmp_Zt3k9Qm2Lp8xW4vN",
    sha256: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
    status: "downloading",
    bytes,
    total: 1_572_864,
  });
}

function batch(seq: number): string {
  return JSON.stringify({ v: 1, boot: 1, samples: [{ seq, ts: 1_764_000_000_000 + seq, m: { temperature: 20 } }] });
}

/** A metric's samples by worker, from the merged /metrics text; `labels` must appear among a sample's labels. */
function byWorker(text: string, series: string, labels = ""): Map<string, number> {
  const found = new Map<string, number>();
  for (const match of text.matchAll(new RegExp(`^${series}\\{(.*)\\} (\\S+)$`, "gm"))) {
    const worker = /worker="(\d+)"/.exec(match[1] as string)?.[1];
    if (worker && (match[1] as string).includes(labels)) found.set(worker, Number(match[2]));
  }
  return found;
}

describe("a gateway of two worker processes", () => {
  let cloud: CloudPeer;
  let dataDir: string;
  let mqttPort: number;
  let httpPort: number;
  let gateway: GatewayProcess | undefined;
  const clients: MqttClient[] = [];

  const start = async (workers: number) => {
    gateway = new GatewayProcess({
      MQTT_PORT: String(mqttPort),
      GATEWAY_HTTP_PORT: String(httpPort),
      GATEWAY_WORKERS: String(workers),
      GATEWAY_DATA_DIR: dataDir,
      CLOUD_URL: cloud.url,
      GATEWAY_KEY: cloud.gatewayKey,
      FORWARD_INTERVAL_MS: "20",
      UPLINK_REPORT_INTERVAL_MS: "100",
    });
    await gateway.start();
  };
  const connect = async (id: string, extra: IClientOptions = {}) => {
    const client = await connectAsync(`mqtt://127.0.0.1:${mqttPort}`, {
      clientId: id,
      username: id,
      password: DEVICES[id],
      reconnectPeriod: 0,
      ...extra,
    });
    clients.push(client);
    return client;
  };
  const metrics = () => fetch(`http://127.0.0.1:${httpPort}/metrics`).then((r) => r.text());
  const telemetrySeqs = (deviceId: string) =>
    cloud.ingests.flatMap((r) =>
      r.telemetry.filter((t) => t.deviceId === deviceId).flatMap((t) => t.batch.samples.map((s) => s.seq)),
    );

  before(async () => {
    cloud = await startCloudPeer(DEVICES);
    dataDir = await tempDir("gateway-workers");
    mqttPort = await freePort();
    httpPort = await freePort();
    await start(2);
  });

  after(async () => {
    for (const client of clients) await client.endAsync(true).catch(() => undefined);
    await gateway?.kill("SIGTERM");
    await cloud.close();
    rmSync(dataDir, { recursive: true, force: true });
  });

  test("devices connect to both workers, their telemetry reaches the cloud, one /healthz and /metrics cover both", async () => {
    const devices = await Promise.all(["wk-0", "wk-1", "wk-2", "wk-3"].map((id) => connect(id)));
    await Promise.all(devices.map((client, i) => client.publishAsync(`d/wk-${i}/telemetry`, batch(i), { qos: 1 })));
    await until(() => ["wk-0", "wk-1", "wk-2", "wk-3"].every((id) => telemetrySeqs(id).length > 0), "forwarded");

    const health = (await fetch(`http://127.0.0.1:${httpPort}/healthz`).then((r) => r.json())) as Record<
      string,
      unknown
    >;
    assert.equal(health.workers, 2);
    assert.equal(health.clients, 4);
    const connected = byWorker(await metrics(), "kestrel_gateway_connected_clients");
    assert.deepEqual([...connected.keys()].sort(), ["0", "1"], "both workers report");
    assert.ok(
      [...connected.values()].every((n) => n > 0),
      `devices on both workers: ${[...connected.entries()]}`,
    );
    await Promise.all(devices.map((client) => client.endAsync()));
  });

  test("a device's new connection on the other worker takes over: the old one closes, its will first", async () => {
    const before = byWorker(await metrics(), "kestrel_gateway_connections_total", 'auth="token"');
    const will = {
      topic: "d/wk-5/state",
      payload: Buffer.from('{"v":1,"online":false}'),
      qos: 1 as const,
      retain: true,
    };
    const first = await connect("wk-5", { will });
    const second = await connect("wk-5");
    await until(() => !first.connected, "the first connection closed");
    await second.publishAsync("d/wk-5/state", '{"v":1,"online":true}', { qos: 1, retain: true });

    // The cluster hands connections to the workers in turn: the two connections are on different workers.
    const after = byWorker(await metrics(), "kestrel_gateway_connections_total", 'auth="token"');
    const grew = [...after.entries()].filter(([worker, n]) => n > (before.get(worker) ?? 0)).map(([w]) => w);
    assert.deepEqual(grew.sort(), ["0", "1"], "each worker accepted one of the two connections");
    const states = await until(() => {
      const found = cloud.ingests.flatMap((r) => r.states.filter((s) => s.deviceId === "wk-5"));
      return found.length >= 2 ? found : undefined;
    }, "both states forwarded");
    const offline = states.find((s) => !s.state.online);
    const online = states.find((s) => s.state.online);
    assert.ok(offline && online, "the old connection's will and the new connection's state");
    // The cloud keeps the state received last: the will must not look newer than the takeover.
    assert.ok(offline.receivedAt <= online.receivedAt, "the will was received before the new connection's state");
    assert.equal(second.connected, true);
    await second.endAsync();
  });

  test("the cloud hears one gateway's uplink, both workers' queues together", async () => {
    const devices = await Promise.all(["wk-0", "wk-1", "wk-2", "wk-3"].map((id) => connect(id)));
    cloud.failIngestWith = 503;
    await Promise.all(
      devices.map((client, i) => client.publishAsync(`d/wk-${i}/telemetry`, batch(200 + i), { qos: 1 })),
    );
    // Two devices on each worker: only the sum of the two queues makes four, and it holds while the cloud refuses.
    const first = await until(() => {
      const at = cloud.uplinkReports.findIndex((r) => r.uplink.pending === 4);
      return at >= 0 ? at : undefined;
    }, "a report of the four batches queued");
    await until(() => cloud.uplinkReports.length >= first + 6, "five more reports");
    const since = cloud.uplinkReports.slice(first, first + 6);
    assert.deepEqual(
      since.map((r) => r.uplink.pending),
      [4, 4, 4, 4, 4, 4],
    );
    assert.equal(new Set(cloud.uplinkReports.map((r) => r.gatewayId)).size, 1, "reported under one gateway id");
    cloud.failIngestWith = undefined;
    await until(() => cloud.uplinkReports.at(-1)?.uplink.pending === 0, "a report of the queues emptied", 15_000);
    await Promise.all(devices.map((client) => client.endAsync()));
  });

  test("each worker keeps its own artifact cache and relays its devices' artifact reports", async () => {
    assert.ok(existsSync(join(dataDir, "artifacts")), "worker 0's cache, where a gateway of one process keeps it");
    assert.ok(existsSync(join(dataDir, "worker-1", "artifacts")), "worker 1's own cache");
    const devices = await Promise.all(["wk-0", "wk-1", "wk-2", "wk-3"].map((id) => connect(id)));
    await Promise.all(
      devices.map((client, i) =>
        client.publishAsync(`d/wk-${i}/artifact/status`, artifactStatus(4096 * i), { qos: 1 }),
      ),
    );
    await until(() => cloud.artifactReports.length >= 4, "the four reports relayed");
    assert.deepEqual(cloud.artifactReports.map((r) => r.deviceId).sort(), ["wk-0", "wk-1", "wk-2", "wk-3"]);
    await Promise.all(devices.map((client) => client.endAsync()));
  });

  test("with fewer workers after a restart, what the others had queued is still delivered", async () => {
    const devices = await Promise.all(["wk-0", "wk-1", "wk-2", "wk-3"].map((id) => connect(id)));
    cloud.failWith = 503;
    cloud.artifactReports.length = 0;
    await Promise.all(
      devices.map((client, i) => client.publishAsync(`d/wk-${i}/telemetry`, batch(100 + i), { qos: 1 })),
    );
    await Promise.all(
      devices.map((client, i) =>
        client.publishAsync(`d/wk-${i}/artifact/status`, artifactStatus(65_536 + i), { qos: 1 }),
      ),
    );
    await Promise.all(devices.map((client) => client.endAsync()));
    await gateway?.kill("SIGTERM");

    cloud.failWith = undefined;
    await start(1);
    await until(
      () => ["wk-0", "wk-1", "wk-2", "wk-3"].every((id, i) => telemetrySeqs(id).includes(100 + i)),
      "every acknowledged batch forwarded by the one process left",
    );
    // Worker 1's artifact reports too, from the queue it left behind.
    await until(() => cloud.artifactReports.length >= 4, "every queued artifact report relayed");
    assert.deepEqual(cloud.artifactReports.map((r) => r.deviceId).sort(), ["wk-0", "wk-1", "wk-2", "wk-3"]);
  });
});

test("merged metrics keep each worker's samples apart under a worker label, one header per family", () => {
  const worker = (n: number) =>
    `# HELP a_total things\n# TYPE a_total counter\na_total{kind="x"} ${n}\n# HELP b gauge\n# TYPE b gauge\nb ${n * 10}\n`;
  assert.equal(
    mergeWorkerMetrics(
      new Map([
        [0, worker(1)],
        [1, worker(2)],
      ]),
    ),
    [
      "# HELP a_total things",
      "# TYPE a_total counter",
      'a_total{kind="x",worker="0"} 1',
      'a_total{kind="x",worker="1"} 2',
      "# HELP b gauge",
      "# TYPE b gauge",
      'b{worker="0"} 10',
      'b{worker="1"} 20',
      "",
    ].join("\n"),
  );
});
