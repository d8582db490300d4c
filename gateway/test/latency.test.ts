// Publish latency at 10 devices, over TCP and TLS: what Nagle's algorithm would break. Without
// TCP_NODELAY a small write waits for the peer's ACK of the previous one, and the device, waiting
// for its PUBACK, delays that ACK by ~40 ms (Linux's delayed ACK): a stall on every publish that
// meets an unacknowledged write. Medians over many publishes keep the bounds far from both the
// healthy figure (a few ms: an fsync) and the stall, so a loaded machine does not fail them.

import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import type { Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { promisify } from "node:util";
import { connectAsync, type MqttClient } from "mqtt";
import { pino } from "pino";
import { loadGatewayConfig } from "../src/config.ts";
import { type Gateway, startGateway } from "../src/gateway.ts";
import { CertificateAuthority } from "../src/pki.ts";
import { type CloudPeer, startCloudPeer } from "./cloud-peer.ts";

const CLIENTS = 10;
const ROUNDS = 30;
/** Well under Linux's 40 ms minimum delayed ACK: a median above it means most publishes stalled. */
const BOUND_MS = 25;

const run = promisify(execFile);
const DEVICES = Object.fromEntries(Array.from({ length: CLIENTS }, (_, i) => [`lat-${i}`, `token-lat-${i}`]));

function telemetry(seq: number): string {
  return JSON.stringify({ v: 1, boot: 1, samples: [{ seq, ts: 1_764_000_000_000 + seq, m: { temperature: 21.5 } }] });
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? Number.NaN;
}

describe("publish latency at 10 devices", () => {
  let dir: string;
  let ca: CertificateAuthority;
  let cloud: CloudPeer;
  let gateway: Gateway;
  const open: MqttClient[] = [];

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "kestrel-gw-latency-"));
    ca = CertificateAuthority.create(join(dir, "ca"), "kestrel-ca", 2);
    const server = ca.issue("gateway", { kind: "server", hosts: ["127.0.0.1"] });
    cloud = await startCloudPeer(DEVICES);
    const config = loadGatewayConfig({
      MQTT_PORT: "0",
      MQTT_TLS_PORT: "0",
      MQTT_TLS_CERT: server.chainPath,
      MQTT_TLS_KEY: server.keyPath,
      GATEWAY_HTTP_PORT: "0",
      GATEWAY_DATA_DIR: join(dir, "gateway"),
      CLOUD_URL: cloud.url,
      GATEWAY_KEY: cloud.gatewayKey,
      FORWARD_INTERVAL_MS: "20",
    });
    gateway = await startGateway(config, pino({ level: "silent" }));
  });

  after(async () => {
    for (const client of open.splice(0)) await client.endAsync(true).catch(() => undefined);
    await gateway.stop();
    await cloud.close();
    rmSync(dir, { recursive: true, force: true });
  });

  /** Ten devices subscribed to their telemetry-ack topic, as the firmware is. */
  async function devices(transport: "tcp" | "tls"): Promise<MqttClient[]> {
    const url =
      transport === "tcp" ? `mqtt://127.0.0.1:${gateway.mqttPort}` : `mqtts://127.0.0.1:${gateway.mqttTlsPort}`;
    const clients = await Promise.all(
      Object.entries(DEVICES).map(([id, token]) =>
        connectAsync(url, { clientId: id, username: id, password: token, reconnectPeriod: 0, ca: ca.certificate }),
      ),
    );
    open.push(...clients);
    await Promise.all(clients.map((client, i) => client.subscribeAsync(`d/lat-${i}/telemetry/ack`, { qos: 0 })));
    return clients;
  }

  async function close(clients: MqttClient[]): Promise<void> {
    await Promise.all(clients.map((client) => client.endAsync(true)));
    open.length = 0;
  }

  /** The median time of `round` over ROUNDS rounds on each of the ten devices, all at once. */
  async function medianRound(
    transport: "tcp" | "tls",
    round: (client: MqttClient, device: number, seq: number) => Promise<unknown>,
  ): Promise<string | undefined> {
    const clients = await devices(transport);
    const latencies: number[] = [];
    await Promise.all(
      clients.map(async (client, i) => {
        for (let seq = 0; seq < ROUNDS; seq++) {
          const started = performance.now();
          await round(client, i, seq);
          latencies.push(performance.now() - started);
        }
      }),
    );
    await close(clients);
    const p50 = median(latencies);
    return p50 < BOUND_MS ? undefined : `median ${p50.toFixed(1)} ms over ${latencies.length} rounds`;
  }

  for (const transport of ["tcp", "tls"] as const) {
    test(`${transport}: one publish in flight a device, the median PUBLISH→PUBACK stays under ${BOUND_MS} ms`, async () => {
      const slow = await medianRound(transport, (client, i, seq) =>
        client.publishAsync(`d/lat-${i}/telemetry`, telemetry(seq), { qos: 1 }),
      );
      assert.equal(slow, undefined);
    });

    test(`${transport}: a command ack and a batch published together, both acknowledged within ${BOUND_MS} ms (median)`, async () => {
      // They go to two disk queues, durable at two different moments: the gateway answers with two
      // writes while the device, waiting for both PUBACKs, sends nothing. The second write is the one Nagle holds.
      const slow = await medianRound(transport, (client, i, seq) =>
        Promise.all([
          client.publishAsync(`d/lat-${i}/cmd/ack`, JSON.stringify({ v: 1, id: `c-${seq}`, status: "done" }), {
            qos: 1,
          }),
          client.publishAsync(`d/lat-${i}/telemetry`, telemetry(seq), { qos: 1 }),
        ]),
      );
      assert.equal(slow, undefined);
    });
  }

  test("the PUBACK and the telemetry ack of a publish leave in one TCP segment", async () => {
    const clients = await devices("tcp");
    const client = clients[0] as MqttClient;
    // The kernel's count of data segments the gateway sent on this connection (ss, from iproute2).
    const filter = `( sport = :${gateway.mqttPort} and dport = :${(client.stream as Socket).localPort} )`;
    const segmentsOut = async () => {
      const { stdout } = await run("ss", ["-Htin", "state", "established", filter]);
      const match = /data_segs_out:(\d+)/.exec(stdout);
      assert.ok(match?.[1], `no data_segs_out in: ${stdout}`);
      return Number(match[1]);
    };
    const before = await segmentsOut();
    for (let seq = 0; seq < ROUNDS; seq++) {
      const acked = new Promise((resolve) => client.once("message", resolve));
      await client.publishAsync("d/lat-0/telemetry", telemetry(seq), { qos: 1 });
      await acked;
    }
    assert.equal((await segmentsOut()) - before, ROUNDS, "data segments for as many publishes (PUBACK + ack each)");
    await close(clients);
  });
});
