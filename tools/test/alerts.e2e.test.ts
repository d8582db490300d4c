// The whole platform (real firmware in XS, gateway, cloud) with a partner receiving webhooks: a
// device that loses power goes offline through its last will, an offline rule fires once it has
// been gone long enough and resolves when it is back; every notification is signed. The run logs
// everything at trace level, and afterwards no line holds any secret the flow used.

import assert from "node:assert/strict";
import { Writable } from "node:stream";
import { after, before, describe, test } from "node:test";
import { createLogger } from "@kestrel/cloud";
import { type Receiver, signatureValid, startReceiver } from "../../cloud/test/webhook-receiver.ts";
import { type Platform, startPlatform } from "../src/platform.ts";
import { CloudApi, tempDir, until } from "./helpers.ts";

/** A wrong password tried once: it must not show up in the logs either. */
const WRONG_PASSWORD = "not-the-password-but-secret-all-the-same";

interface Notice {
  type: string;
  data: { deviceId?: string; ruleId?: string; kind?: string };
}

describe("alerts end to end, and secrets in the logs", () => {
  let platform: Platform;
  let api: CloudApi;
  let receiver: Receiver;
  const logged: string[] = [];
  const secrets = new Map<string, string>();
  const env = { WEBHOOK_ALLOWED_NETWORKS: "127.0.0.0/8", ALERT_SWEEP_SECONDS: "1" };

  before(async () => {
    Object.assign(process.env, env);
    receiver = await startReceiver();
    const sink = new Writable({
      write(chunk: Buffer, _encoding, done) {
        logged.push(...chunk.toString().split("\n").filter(Boolean));
        done();
      },
    });
    platform = await startPlatform({
      dataDir: await tempDir("alerts-e2e"),
      deviceCount: 1,
      sampleIntervalMs: 200,
      samplesPerBatch: 1,
      logger: createLogger({ level: "trace", destination: sink }),
    });
    api = new CloudApi(platform.cloudUrl);
    const { admin, gatewayKey, devices } = platform.credentials;
    await api.login(admin.email, admin.password);
    secrets.set("admin password", admin.password);
    secrets.set("gateway key", gatewayKey);
    for (const device of devices) secrets.set(`token of ${device.deviceId}`, device.token);
    secrets.set("session token", (api as unknown as { token: string }).token);
  });

  after(async () => {
    await platform?.stop();
    await receiver?.close();
    for (const name of Object.keys(env)) delete process.env[name];
  });

  const notices = (secret: string) =>
    receiver.deliveries.map((delivery) => {
      assert.equal(signatureValid(delivery.headers, delivery.body, secret, 300), true);
      return JSON.parse(delivery.body) as Notice;
    });

  test("a device that loses power is offline (last will), alerted after the rule's duration, resolved when back", async () => {
    const [device] = platform.devices;
    assert.ok(device);
    const endpoint = (await api.request("POST", "/api/webhooks/endpoints", {
      url: `${receiver.url}/partner`,
      events: ["alert.fired", "alert.resolved", "device.offline", "device.online"],
    })) as { secret: string };
    secrets.set("webhook secret", endpoint.secret);
    const key = (await api.request("POST", "/api/keys", { name: "partner", scopes: ["read"] })) as { key: string };
    secrets.set("API key", key.key);
    const rule = (await api.request("POST", "/api/alerts/rules", {
      name: "Device gone",
      severity: "critical",
      condition: { kind: "offline", forSeconds: 3 },
    })) as { ruleId: string };
    await device.connected;
    await until(
      async () =>
        ((await api.request("GET", `/api/devices/${device.deviceId}`)) as { online: boolean }).online || undefined,
      "online",
    );

    const cut = device.faults.powerLoss({ offMs: 10_000 });
    const offline = await until(
      async () =>
        notices(endpoint.secret).find((n) => n.type === "device.offline" && n.data.deviceId === device.deviceId),
      "the device.offline event (last will)",
    );
    assert.ok(offline);
    const fired = await until(
      async () => notices(endpoint.secret).find((n) => n.type === "alert.fired" && n.data.ruleId === rule.ruleId),
      "the offline alert",
    );
    assert.equal(fired.data.deviceId, device.deviceId);
    assert.equal(fired.data.kind, "offline");
    await cut;
    await until(
      async () => notices(endpoint.secret).find((n) => n.type === "alert.resolved" && n.data.ruleId === rule.ruleId),
      "the alert resolved once the device is back",
    );
    const mine = notices(endpoint.secret).filter((n) => n.data.ruleId === rule.ruleId);
    assert.deepEqual(
      mine.map((n) => n.type),
      ["alert.fired", "alert.resolved"],
    );
    const alerts = (await api.request("GET", `/api/alerts?ruleId=${rule.ruleId}`)) as {
      items: Array<{ status: string }>;
    };
    assert.deepEqual(
      alerts.items.map((alert) => alert.status),
      ["resolved"],
    );
  });

  test("no line logged during the flow holds a secret it used", async () => {
    // A failed login with a password, a wrong device token and a bad key leave traces too.
    await fetch(`${platform.cloudUrl}/api/auth/login`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ email: "admin@kestrel.local", password: WRONG_PASSWORD }),
    });
    secrets.set("wrong password", WRONG_PASSWORD);
    await fetch(`${platform.cloudUrl}/api/devices?token=${secrets.get("API key")}`, {
      headers: { authorization: `Bearer ${secrets.get("API key")}` },
    });
    const services = new Set(logged.map((line) => (JSON.parse(line) as { service?: string }).service));
    assert.deepEqual([...services].sort(), ["cloud", "device", "gateway"], "every part of the flow logged");
    assert.ok(logged.length > 50, `${logged.length} lines logged`);
    for (const [name, secret] of secrets) {
      const leaks = logged.filter((line) => line.includes(secret));
      assert.deepEqual(leaks, [], `the ${name} was logged`);
    }
  });
});
