// Two cloud replicas (separate processes, one database) both evaluating alerts: whichever receives
// the ingest, each state change is notified exactly once, and each device connection change too.

import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { stopProcess } from "../../gateway/test/mosquitto-broker.ts";
import { type Service, startCloudProcess } from "../bench/processes.ts";
import { connectDb, type Database } from "../src/storage/connect.ts";
import { type EmbeddedFerretDb, startEmbeddedFerretDb } from "../src/storage/embedded-ferretdb.ts";
import type { Credentials } from "../src/tenants/bootstrap.ts";
import { bootstrapTenant, PASSWORD } from "./helpers.ts";
import { type Receiver, signatureValid, startReceiver } from "./webhook-receiver.ts";

let dir: string;
let ferret: EmbeddedFerretDb;
let database: Database;
let replicas: Service[] = [];
let receiver: Receiver;
let acme: Credentials;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function call(replica: Service, method: string, path: string, token: string, body?: unknown) {
  const response = await fetch(`${replica.url}${path}`, {
    method,
    headers: { authorization: `Bearer ${token}`, ...(body !== undefined && { "content-type": "application/json" }) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  assert.ok(response.ok, `${method} ${path} answered ${response.status}: ${text}`);
  return text ? JSON.parse(text) : undefined;
}

before(async () => {
  dir = await mkdtemp(join(tmpdir(), "kestrel-replicas-"));
  ferret = await startEmbeddedFerretDb({ dataDir: join(dir, "ferretdb") });
  database = await connectDb(ferret.uri, "replicas");
  acme = await bootstrapTenant(database.db, "Acme", ["dev-1"]);
  receiver = await startReceiver();
  const config = {
    SECRETS_KEY: randomBytes(32).toString("base64"),
    WEBHOOK_ALLOWED_NETWORKS: "127.0.0.0/8",
    ALERT_SWEEP_SECONDS: "1",
    DATA_DIR: dir,
  };
  replicas = await Promise.all([0, 1].map(() => startCloudProcess(ferret.uri, "replicas", [], config)));
});

after(async () => {
  for (const replica of replicas) await stopProcess(replica.child);
  await receiver?.close();
  await database?.close();
  await ferret?.stop();
  await rm(dir, { recursive: true, force: true });
});

test("two replicas evaluating: exactly one notification per state change", async () => {
  const [a, b] = replicas as [Service, Service];
  const login = await fetch(`${a.url}/api/auth/login`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ email: acme.admin.email, password: PASSWORD }),
  });
  const { token } = (await login.json()) as { token: string };
  const { secret } = await call(b, "POST", "/api/webhooks/endpoints", token, {
    url: `${receiver.url}/partner`,
    events: ["alert.fired", "alert.resolved", "device.online", "device.offline"],
  });
  await call(a, "POST", "/api/alerts/rules", token, {
    name: "Hot",
    condition: { kind: "threshold", metric: "temperature", op: "above", high: 30, clearHigh: 28, forSeconds: 0 },
  });
  await sleep(2500); // Both replicas' rule caches have the rule.

  const start = Date.now() - 60_000;
  const values = [25, 35, 36, 27, 35, 20];
  for (const [seq, value] of values.entries()) {
    // Alternate replicas, each request also sent twice (a gateway retry) to the other replica.
    const body = {
      telemetry: [
        {
          deviceId: "dev-1",
          batch: { v: 1, boot: 1, samples: [{ seq, ts: start + seq * 1000, m: { temperature: value } }] },
        },
      ],
      states: [{ deviceId: "dev-1", receivedAt: start + seq * 1000, state: { v: 1, online: seq % 3 !== 2 } }],
    };
    const [first, second] = seq % 2 === 0 ? [a, b] : [b, a];
    await call(first, "POST", "/api/gateway/v1/ingest", acme.gatewayKey, body);
    await call(second, "POST", "/api/gateway/v1/ingest", acme.gatewayKey, body);
    await sleep(400);
  }
  const notices = () =>
    receiver.deliveries.map((delivery) => {
      assert.equal(signatureValid(delivery.headers, delivery.body, secret), true);
      return JSON.parse(delivery.body) as { id: string; type: string; data: { alertId?: string } };
    });
  const deadline = Date.now() + 30_000;
  while (notices().filter((n) => n.type.startsWith("alert.")).length < 4 && Date.now() < deadline) await sleep(200);
  await sleep(3000); // Anything sent twice would have arrived by now.
  const alerts = notices().filter((n) => n.type.startsWith("alert."));
  assert.deepEqual(
    alerts.map((n) => n.type),
    ["alert.fired", "alert.resolved", "alert.fired", "alert.resolved"],
  );
  assert.equal(alerts[0]?.data.alertId, alerts[1]?.data.alertId);
  assert.equal(alerts[2]?.data.alertId, alerts[3]?.data.alertId);
  assert.notEqual(alerts[0]?.data.alertId, alerts[2]?.data.alertId);
  // online, offline at seq 2, online at 3, offline at 5: each change once.
  assert.deepEqual(
    notices()
      .filter((n) => n.type.startsWith("device."))
      .map((n) => n.type),
    ["device.online", "device.offline", "device.online", "device.offline"],
  );
  assert.equal(new Set(notices().map((n) => n.id)).size, notices().length, "no event delivered twice");
});
