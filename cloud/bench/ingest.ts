// End-to-end ingest rate: mqtt.js devices publish single-sample telemetry
// batches at QoS 1 to the real gateway, which forwards them to the cloud, which
// stores them in FerretDB. Baseline, same run and same database: the raw
// driver's insertMany of equivalent per-sample documents, in requests of the
// gateway's forward batch size.

import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadGatewayConfig, startGateway } from "@kestrel/gateway";
import { type TelemetryBatch, topics } from "@kestrel/wire";
import { connectAsync, type MqttClient } from "mqtt";
import pino from "pino";
import { buildApp } from "../src/app.ts";
import { loadConfig } from "../src/config.ts";
import { connectDb } from "../src/storage/connect.ts";
import { startEmbeddedFerretDb } from "../src/storage/embedded-ferretdb.ts";
import { TelemetryStore } from "../src/telemetry/telemetry-store.ts";
import { bootstrap } from "../src/tenants/bootstrap.ts";

const DEVICES = Number(process.env.BENCH_DEVICES ?? 50);
const SAMPLES_PER_DEVICE = Number(process.env.BENCH_SAMPLES ?? 100);
/** Samples per MQTT message: 1 is the worst case; the firmware batches 5 by default (manifest samplesPerBatch). */
const SAMPLES_PER_MESSAGE = Number(process.env.BENCH_SAMPLES_PER_MESSAGE ?? 1);
const FORWARD_BATCH = 200;
const DRAIN_TIMEOUT_MS = 300_000;
const T0 = Date.UTC(2026, 10, 1);

function print(line: string): void {
  process.stdout.write(`${line}\n`);
}

export async function ingestBenchmark(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), "kestrel-bench-ingest-"));
  const logger = pino({ level: "error" });
  const ferret = await startEmbeddedFerretDb({ dataDir: join(dir, "ferretdb") });
  const config = loadConfig({ DATA_DIR: dir, HOST: "127.0.0.1", PORT: "0" });
  const database = await connectDb(ferret.uri, config.mongoDb);
  const clients: MqttClient[] = [];
  try {
    const deviceIds = Array.from({ length: DEVICES }, (_, i) => `bench-${i}`);
    const credentials = await bootstrap(database.db, { tenantName: "Bench", adminEmail: "a@bench.test", deviceIds });
    const app = await buildApp({ db: database.db, config });
    await app.listen({ port: 0, host: "127.0.0.1" });
    const address = app.server.address();
    const cloudUrl = `http://127.0.0.1:${typeof address === "object" && address ? address.port : 0}`;
    const gateway = await startGateway(
      loadGatewayConfig({
        MQTT_PORT: "0",
        GATEWAY_HTTP_PORT: "0",
        CLOUD_URL: cloudUrl,
        GATEWAY_KEY: credentials.gatewayKey,
        GATEWAY_DATA_DIR: join(dir, "gateway"),
        FORWARD_INTERVAL_MS: "20",
        FORWARD_MAX_BATCHES: String(FORWARD_BATCH),
      }),
      logger,
    );
    try {
      for (const device of credentials.devices) {
        clients.push(
          await connectAsync(`mqtt://127.0.0.1:${gateway.mqttPort}`, {
            clientId: device.deviceId,
            username: device.deviceId,
            password: device.token,
            reconnectPeriod: 0,
          }),
        );
      }
      const total = DEVICES * SAMPLES_PER_DEVICE;
      const sample = (seq: number) => ({
        seq,
        ts: T0 + seq * 1000,
        m: { temperature: 20 + (seq % 10), humidity: 40 + (seq % 7) },
      });
      const batch = (first: number, count = 1): TelemetryBatch => ({
        v: 1,
        boot: 1,
        samples: Array.from({ length: count }, (_, i) => sample(first + i)),
      });
      const messages = Math.ceil(SAMPLES_PER_DEVICE / SAMPLES_PER_MESSAGE);
      const started = performance.now();
      await Promise.all(
        clients.map(async (client, i) => {
          const topic = topics.telemetry(deviceIds[i] as string);
          // All in flight at once, as a device flushing its queue after a reconnect would.
          await Promise.all(
            Array.from({ length: messages }, (_, m) => {
              const first = m * SAMPLES_PER_MESSAGE;
              const count = Math.min(SAMPLES_PER_MESSAGE, SAMPLES_PER_DEVICE - first);
              return client.publishAsync(topic, JSON.stringify(batch(first, count)), { qos: 1 });
            }),
          );
        }),
      );
      const store = new TelemetryStore(database.db);
      while ((await store.countSamples(credentials.tenantId)) < total) {
        if (performance.now() - started > DRAIN_TIMEOUT_MS) throw new Error("the pipeline did not drain in time");
        await new Promise((resolve) => setTimeout(resolve, 200));
      }
      const endToEndS = (performance.now() - started) / 1000;
      // Charts, rollups and latest values follow once the journal is applied.
      while (!(await store.applied())) {
        if (performance.now() - started > DRAIN_TIMEOUT_MS) throw new Error("the journal was not applied in time");
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      const appliedS = (performance.now() - started) / 1000;

      // The cloud's share alone: the same samples POSTed straight to the ingest API (seq moved on, so all are new).
      const direct = deviceIds.flatMap((deviceId) =>
        Array.from({ length: SAMPLES_PER_DEVICE }, (_, seq) => ({ deviceId, batch: batch(SAMPLES_PER_DEVICE + seq) })),
      );
      const cloudStarted = performance.now();
      for (let i = 0; i < direct.length; i += FORWARD_BATCH) {
        const response = await fetch(`${cloudUrl}/api/gateway/v1/ingest`, {
          method: "POST",
          headers: { authorization: `Bearer ${credentials.gatewayKey}`, "content-type": "application/json" },
          body: JSON.stringify({ telemetry: direct.slice(i, i + FORWARD_BATCH) }),
        });
        if (response.status !== 200) throw new Error(`ingest answered ${response.status}`);
      }
      const cloudS = (performance.now() - cloudStarted) / 1000;

      const raw = database.db.collection<{ _id: string }>("bench_raw_baseline");
      const docs = deviceIds.flatMap((deviceId) =>
        Array.from({ length: SAMPLES_PER_DEVICE }, (_, seq) => {
          return { _id: `${credentials.tenantId}|${deviceId}|1|${seq}`, deviceId, ...sample(seq) };
        }),
      );
      const rawStarted = performance.now();
      for (let i = 0; i < docs.length; i += FORWARD_BATCH) {
        await raw.insertMany(docs.slice(i, i + FORWARD_BATCH), { ordered: false });
      }
      const rawS = (performance.now() - rawStarted) / 1000;
      const rate = (seconds: number) => (total / seconds).toFixed(0);
      const ratio = (seconds: number) => `${(rawS / seconds).toFixed(2)}x raw`;
      print(
        `ingest: ${DEVICES} devices x ${SAMPLES_PER_DEVICE} samples in batches of ${SAMPLES_PER_MESSAGE}, QoS 1, FerretDB (target >= 0.5x raw)`,
      );
      print(`  raw driver insertMany, same documents, batches of ${FORWARD_BATCH}: ${rate(rawS)} samples/s`);
      print(`  end-to-end, acknowledged and stored:  ${rate(endToEndS)} samples/s = ${ratio(endToEndS)}`);
      print(`  end-to-end, applied (history, rollups, latest): ${rate(appliedS)} samples/s = ${ratio(appliedS)}`);
      print(`  cloud ingest API alone, POSTs of ${FORWARD_BATCH} items: ${rate(cloudS)} samples/s = ${ratio(cloudS)}`);
    } finally {
      await Promise.all(clients.map((client) => client.endAsync()));
      await gateway.stop();
      await app.close();
    }
  } finally {
    await database.close();
    await ferret.stop();
    await rm(dir, { recursive: true, force: true });
  }
}
