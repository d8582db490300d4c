// Nothing acknowledged is lost or duplicated: the gateway, running as its own
// process against the real cloud, is SIGKILLed mid-stream and restarted, and
// the cloud goes away for 60 s during a steady stream. Every reading the
// device got a PUBACK for must then be in the history exactly once.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { connectAsync, type MqttClient } from "mqtt";
import { freePort, GatewayProcess, type RawSample, RealCloud, tempDir } from "./real-cloud.ts";
import { until } from "./until.ts";

// As long as the issue asks: the forwarder's retries back off to their ceiling, the queue grows for a minute.
const CLOUD_OUTAGE_MS = 60_000;
const IN_FLIGHT = 8;
// About 200 publishes a second while the gateway restarts; about 50 a second through the minute-long
// outage, so its backlog (some 3,000 readings) stays within one raw history answer.
const CRASH_PAUSE_MS = 40;
const OUTAGE_PAUSE_MS = 150;
const BASE_TS = Date.now() - 3_600_000;

/** Publishes one-sample batches seq by seq with a window of QoS 1 publishes in flight; records every PUBACK. */
class SteadyStream {
  readonly acked = new Set<number>();
  private next = 0;
  private stopped = false;
  private running: Promise<void> | undefined;

  constructor(
    private readonly deviceId: string,
    private readonly boot: number,
    private readonly pauseMs: number,
  ) {}

  run(client: MqttClient, stopWhen: () => boolean): Promise<void> {
    this.stopped = false;
    const worker = async () => {
      while (!this.stopped && client.connected && !stopWhen()) {
        const seq = this.next++;
        const batch = { v: 1, boot: this.boot, samples: [{ seq, ts: BASE_TS + seq * 100, m: { temperature: seq } }] };
        try {
          await client.publishAsync(`d/${this.deviceId}/telemetry`, JSON.stringify(batch), { qos: 1 });
          this.acked.add(seq);
        } catch {
          return;
        }
        await new Promise((resolve) => setTimeout(resolve, this.pauseMs));
      }
    };
    this.running = Promise.all(Array.from({ length: IN_FLIGHT }, worker)).then(() => undefined);
    return this.running;
  }

  /** A device resends what it has no PUBACK for; this one simply starts again after the last acknowledged seq. */
  resumeAfterAcked(): void {
    this.next = Math.max(-1, ...this.acked) + 1;
  }

  stop(): void {
    this.stopped = true;
  }
}

function assertExactlyOnce(samples: RawSample[], boot: number, acked: Set<number>): void {
  const seqs = samples.filter((s) => s.boot === boot).map((s) => s.seq);
  assert.equal(new Set(seqs).size, seqs.length, "a reading is stored twice");
  const stored = new Set(seqs);
  const missing = [...acked].filter((seq) => !stored.has(seq));
  assert.deepEqual(missing, [], "acknowledged readings are missing");
}

describe("durable uplink against the real cloud", () => {
  let cloud: RealCloud;
  let gateway: GatewayProcess;
  let mqttPort: number;

  const connect = (deviceId: string) => {
    const device = cloud.credentials.devices.find((d) => d.deviceId === deviceId);
    assert.ok(device);
    return connectAsync(`mqtt://127.0.0.1:${mqttPort}`, {
      clientId: deviceId,
      username: deviceId,
      password: device.token,
      reconnectPeriod: 0,
    });
  };

  const storedAll = (deviceId: string, boot: number, acked: Set<number>) =>
    until(
      async () => {
        const samples = await cloud.rawHistory(deviceId);
        const seqs = new Set(samples.filter((s) => s.boot === boot).map((s) => s.seq));
        return [...acked].every((seq) => seqs.has(seq)) ? samples : undefined;
      },
      `every acknowledged reading of ${deviceId} stored`,
      60_000,
      100,
    );

  before(async () => {
    cloud = await RealCloud.start(["crash-1", "outage-1"]);
    mqttPort = await freePort();
    gateway = new GatewayProcess({
      MQTT_PORT: String(mqttPort),
      GATEWAY_HTTP_PORT: "0",
      CLOUD_URL: cloud.url,
      GATEWAY_KEY: cloud.credentials.gatewayKey,
      GATEWAY_DATA_DIR: await tempDir("gateway"),
      FORWARD_INTERVAL_MS: "50",
    });
    await gateway.start();
  });

  after(async () => {
    await gateway?.kill("SIGTERM");
    await cloud?.stop();
  });

  test("a gateway killed with SIGKILL mid-stream loses and duplicates nothing it acknowledged", async () => {
    const stream = new SteadyStream("crash-1", 1, CRASH_PAUSE_MS);
    const first = await connect("crash-1");
    const streaming = stream.run(first, () => false);
    await until(async () => (stream.acked.size >= 300 ? true : undefined), "300 acknowledged publishes", 20_000, 100);
    // Killed while publishes are in flight and the queue has undelivered items.
    await gateway.kill("SIGKILL");
    stream.stop();
    // Ending the client fails the publishes still waiting for a PUBACK that will never come.
    await first.endAsync(true);
    await streaming;
    const ackedBeforeKill = stream.acked.size;

    await gateway.start();
    stream.resumeAfterAcked();
    const second = await connect("crash-1");
    await stream.run(second, () => stream.acked.size >= ackedBeforeKill + 100);
    await second.endAsync();

    const samples = await storedAll("crash-1", 1, stream.acked);
    assertExactlyOnce(samples, 1, stream.acked);
  });

  test("the cloud down for 60 s during a steady stream: afterwards every reading is stored exactly once", async () => {
    const stream = new SteadyStream("outage-1", 7, OUTAGE_PAUSE_MS);
    const client = await connect("outage-1");
    const streaming = stream.run(client, () => false);
    await until(async () => (stream.acked.size >= 100 ? true : undefined), "100 acknowledged publishes", 20_000, 100);
    await cloud.halt();
    const atHalt = stream.acked.size;
    // Checked every 10 s: the gateway keeps acknowledging through the whole outage, not only its start.
    let previous = atHalt;
    for (let elapsed = 0; elapsed < CLOUD_OUTAGE_MS; elapsed += 10_000) {
      await new Promise((resolve) => setTimeout(resolve, 10_000));
      assert.ok(stream.acked.size > previous, `the gateway stopped acknowledging ${elapsed / 1000} s into the outage`);
      previous = stream.acked.size;
    }
    const atResume = stream.acked.size;
    await cloud.resume();
    await until(
      async () => (stream.acked.size >= atResume + 200 ? true : undefined),
      "stream after outage",
      20_000,
      100,
    );
    stream.stop();
    await streaming;
    await client.endAsync();

    const samples = await storedAll("outage-1", 7, stream.acked);
    assertExactlyOnce(samples, 7, stream.acked);
    // The stream stopped cleanly, so every reading sent was acknowledged: the history holds exactly those.
    assert.equal(samples.filter((s) => s.boot === 7).length, stream.acked.size);
    assert.ok(atResume - atHalt >= 1000, `only ${atResume - atHalt} readings arrived during the outage`);
  });
});
