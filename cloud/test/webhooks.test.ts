// Partner webhooks: endpoints with a secret shown once and stored sealed, signed deliveries of
// domain events, retries in order per endpoint, dead letters and manual redelivery, automatic
// disable after sustained failure, and the delivery log.

import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { after, before, describe, test } from "node:test";
import { buildEsp32Image } from "@kestrel/wire/esp32-image";
import { pino } from "pino";
import { nodeSha256 } from "../src/artifacts/validators.ts";
import { SecretBox } from "../src/auth/secret-box.ts";
import { EventPublisher } from "../src/events/event-publisher.ts";
import { ExportScheduler } from "../src/exports/scheduler.ts";
import { CloudMetrics } from "../src/metrics/cloud-metrics.ts";
import type { Credentials } from "../src/tenants/bootstrap.ts";
import { type DispatcherOptions, WebhookDispatcher } from "../src/webhooks/dispatcher.ts";
import { WebhookEgress } from "../src/webhooks/egress.ts";
import type { DeliveryView, EndpointView, EndpointWithSecret } from "../src/webhooks/webhook-schema.ts";
import { bearer, bootstrapTenant, login, startTestCloud, type TestCloud } from "./helpers.ts";
import { closedUrl, type Receiver, signatureValid, startReceiver } from "./webhook-receiver.ts";

describe("partner webhooks", () => {
  let cloud: TestCloud;
  let acme: Credentials;
  let globex: Credentials;
  let session: string;
  let receiver: Receiver;
  const secretsKey = randomBytes(32);
  const secrets = new SecretBox(secretsKey);
  const logger = pino({ level: "silent" });
  /** A dispatcher as this one replica runs it (restarted per test); tests drive it pass by pass, on their clock. */
  const dispatcher = (options: Partial<DispatcherOptions> = {}) =>
    new WebhookDispatcher(cloud.db, logger, {
      secrets,
      egress: new WebhookEgress(["127.0.0.0/8"]),
      metrics: new CloudMetrics(),
      random: () => 0.5,
      holder: "the-replica",
      ...options,
    });

  const api = (method: "GET" | "POST" | "PATCH" | "DELETE", url: string, payload?: object, token = session) =>
    cloud.app.inject({ method, url, headers: bearer(token), ...(payload && { payload }) });

  async function endpoint(path: string, events: string[] = ["command.done"]): Promise<EndpointWithSecret> {
    const response = await api("POST", "/api/webhooks/endpoints", { url: `${receiver.url}${path}`, events });
    assert.equal(response.statusCode, 201, response.body);
    return response.json();
  }

  const publisher = () => new EventPublisher(cloud.db);
  const publish = (key: string, tenantId = acme.tenantId) =>
    publisher().publish(tenantId, "command.done", key, {
      deviceId: "dev-1",
      commandId: key,
      name: "ping",
      status: "done",
      reason: null,
      result: { uptime: 1 },
      at: Date.now(),
    });

  const deliveriesTo = (path: string) => receiver.deliveries.filter((d) => d.path === path);
  const eventIds = (path: string) => deliveriesTo(path).map((d) => JSON.parse(d.body).id as string);

  before(async () => {
    cloud = await startTestCloud({
      WEBHOOK_DISPATCHER: "off",
      SECRETS_KEY: secretsKey.toString("base64"),
      WEBHOOK_ALLOWED_NETWORKS: "127.0.0.0/8",
    });
    acme = await bootstrapTenant(cloud.db, "Acme", ["dev-1"]);
    globex = await bootstrapTenant(cloud.db, "Globex", ["gx-1"]);
    session = await login(cloud.app, acme.admin.email);
    receiver = await startReceiver();
  });
  after(async () => {
    await receiver?.close();
    await cloud?.close();
  });

  test("an endpoint's secret is shown once and stored sealed; bad endpoints are refused", async () => {
    const created = await endpoint("/created");
    assert.ok(created.secret.length >= 32);
    assert.equal(created.enabled, true);
    assert.equal(created.disabled, null);
    const listed = await api("GET", "/api/webhooks/endpoints");
    assert.equal(listed.statusCode, 200);
    assert.ok(!listed.body.includes(created.secret), "listings never show the secret");
    const stored = await cloud.db.collection("webhook_endpoints").findOne({ _id: created.endpointId as never });
    assert.ok(stored && !JSON.stringify(stored).includes(created.secret), "stored sealed");
    assert.equal(secrets.open(String(stored.secret)), created.secret);

    for (const [body, code] of [
      [{ url: "http://10.1.2.3/hook", events: ["alert.fired"] }, "invalid_endpoint"],
      [{ url: "ftp://example.com/", events: ["alert.fired"] }, "invalid_endpoint"],
      [{ url: "https://user:pw@example.com/", events: ["alert.fired"] }, "invalid_endpoint"],
      [{ url: "https://example.com/", events: ["no.such"] }, "invalid_request"],
      [{ url: "https://example.com/", events: [] }, "invalid_request"],
    ] as const) {
      const response = await api("POST", "/api/webhooks/endpoints", body);
      assert.equal(response.statusCode, 400, JSON.stringify(body));
      assert.equal(response.json().code, code);
    }
    const rotated = await api("POST", `/api/webhooks/endpoints/${created.endpointId}/secret`);
    assert.equal(rotated.statusCode, 200);
    assert.notEqual(rotated.json().secret, created.secret);
    const other = await login(cloud.app, globex.admin.email);
    assert.equal((await api("GET", `/api/webhooks/endpoints/${created.endpointId}`, undefined, other)).statusCode, 404);
    assert.equal((await api("DELETE", `/api/webhooks/endpoints/${created.endpointId}`)).statusCode, 204);
  });

  test("a delivery is the signed event envelope; a receiver checking the signature accepts it", async () => {
    const created = await endpoint("/signed");
    const { id } = await publish("signed-1");
    const again = await publish("signed-1");
    assert.equal(again.published, false, "the same occurrence is one event");
    await publisher().publish(globex.tenantId, "command.done", "signed-1", { at: 1 });
    await dispatcher().drain();
    const [delivery, ...more] = deliveriesTo("/signed");
    assert.ok(delivery);
    assert.equal(more.length, 0, "delivered once, and nothing of another organization");
    assert.equal(signatureValid(delivery.headers, delivery.body, created.secret, 300), true);
    assert.equal(signatureValid(delivery.headers, delivery.body.replace("ping", "pong"), created.secret), false);
    assert.equal(signatureValid(delivery.headers, delivery.body, `${created.secret}x`), false);
    const event = JSON.parse(delivery.body);
    assert.deepEqual(
      { id: event.id, type: event.type, organization: event.organization, commandId: event.data.commandId },
      { id, type: "command.done", organization: acme.tenantId, commandId: "signed-1" },
    );
    assert.equal(delivery.headers["kestrel-event"], "command.done");
    assert.equal(delivery.headers["kestrel-event-id"], id);
    assert.equal(delivery.headers["content-type"], "application/json");
    await api("DELETE", `/api/webhooks/endpoints/${created.endpointId}`);
  });

  test("events published within one millisecond reach the receiver in the order they were published", async () => {
    await endpoint("/same-ms");
    // One clock reading for all: their ids (hashes) sort in no particular order.
    const sameMs = new EventPublisher(cloud.db, () => 1_800_000_000_000);
    const published: string[] = [];
    for (let i = 0; i < 20; i++) {
      const { id } = await sameMs.publish(acme.tenantId, "command.done", `same-ms-${i}`, {
        deviceId: "dev-1",
        commandId: `same-ms-${i}`,
        name: "ping",
        status: "done",
        reason: null,
        result: null,
        at: 1_800_000_000_000,
      });
      published.push(id);
    }
    assert.notDeepEqual([...published].sort(), published, "ids in publish order would not test the order");
    const replica = dispatcher();
    for (let pass = 0; pass < 100 && eventIds("/same-ms").length < published.length; pass++) await replica.drain();
    assert.deepEqual(eventIds("/same-ms"), published);
  });

  test("a receiver that fails 5 times then succeeds gets each event once, in order", async () => {
    const created = await endpoint("/flaky");
    let failures = 0;
    receiver.answer = (d) => ({ status: d.path === "/flaky" && failures++ < 5 ? 503 : 200 });
    const published = [];
    for (const key of ["order-1", "order-2", "order-3"]) published.push((await publish(key)).id);
    const replica = dispatcher({ retryBaseMs: 10, retryMaxMs: 40 });
    for (let pass = 0; pass < 200 && eventIds("/flaky").length < 8; pass++) {
      await replica.drain();
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    receiver.answer = () => ({ status: 200 });
    const [first, second, third] = published;
    // Five failed attempts of the first event, its success, then the others: never ahead of it.
    assert.deepEqual(eventIds("/flaky"), [first, first, first, first, first, first, second, third]);

    const log = await api("GET", `/api/webhooks/endpoints/${created.endpointId}/deliveries`);
    assert.equal(log.statusCode, 200, log.body);
    const items = log.json().items as Array<{ deliveryId: string; eventId: string; status: string; attempts: number }>;
    assert.deepEqual(Object.fromEntries(items.map((item) => [item.eventId, [item.status, item.attempts]])), {
      [first as string]: ["succeeded", 6],
      [second as string]: ["succeeded", 1],
      [third as string]: ["succeeded", 1],
    });
    const firstDelivery = items.find((item) => item.eventId === first);
    const one = await api(
      "GET",
      `/api/webhooks/endpoints/${created.endpointId}/deliveries/${firstDelivery?.deliveryId}`,
    );
    const view = one.json() as DeliveryView;
    assert.deepEqual(
      view.attempts.map((a) => [a.n, a.statusCode]),
      [
        [1, 503],
        [2, 503],
        [3, 503],
        [4, 503],
        [5, 503],
        [6, 200],
      ],
    );
    assert.equal(view.attempts[0]?.snippet, "receiver says no");
    assert.equal(view.attempts[0]?.error, "answered HTTP 503");
    assert.ok(view.attempts.every((a) => a.latencyMs >= 0));
    assert.equal((view.payload as { id: string }).id, first);
    const health = (await api("GET", `/api/webhooks/endpoints/${created.endpointId}`)).json() as EndpointView;
    assert.equal(health.health.consecutiveFailures, 0);
    assert.ok(health.health.lastSuccessAt);
    await api("DELETE", `/api/webhooks/endpoints/${created.endpointId}`);
  });

  test("a delivery failing for the whole retry window is dead-lettered; redelivery sends it again", async () => {
    const created = await endpoint("/dead");
    receiver.answer = (d) => ({ status: d.path === "/dead" ? 500 : 200 });
    let now = Date.now();
    const replica = dispatcher({ now: () => now, retryBaseMs: 1000, retryMaxMs: 60_000, retryWindowMs: 3_600_000 });
    const { id } = await publisher().publish(acme.tenantId, "command.done", "dead-1", { at: now });
    let attempts = 0;
    for (; attempts < 200; attempts++) {
      await replica.drain();
      const [entry] = await cloud.db.collection("webhook_pending").find({ endpointId: created.endpointId }).toArray();
      if (!entry) break;
      now = Number(entry.nextAttemptAt);
    }
    const log = await api("GET", `/api/webhooks/endpoints/${created.endpointId}/deliveries?status=dead`);
    const [dead] = log.json().items as Array<{
      deliveryId: string;
      eventId: string;
      deadReason: string;
      attempts: number;
    }>;
    assert.equal(dead?.eventId, id);
    assert.equal(dead?.deadReason, "retries exhausted");
    assert.equal(dead?.attempts, deliveriesTo("/dead").length);
    // Exponential backoff capped at a minute: a handful of attempts in the first minutes, then one a minute.
    // Delays 0.75, 1.5, 3, … s (random() = 0.5: 75 % of each), then 45 s (the 60 s cap at 75 %): ~85 in the hour.
    assert.ok(dead.attempts > 80 && dead.attempts < 90, `${dead.attempts} attempts in an hour`);

    receiver.answer = () => ({ status: 200 });
    const path = `/api/webhooks/endpoints/${created.endpointId}/deliveries/${dead.deliveryId}/redeliver`;
    const queued = await api("POST", path);
    assert.equal(queued.statusCode, 202, queued.body);
    assert.equal(queued.json().status, "pending");
    assert.equal((await api("POST", path)).statusCode, 409, "already queued");
    now = Date.now();
    await replica.drain();
    const redelivered = deliveriesTo("/dead").at(-1);
    assert.equal(JSON.parse(redelivered?.body ?? "{}").id, id, "the same event, once more");
    assert.equal(redelivered?.headers["kestrel-attempt"], String(dead.attempts + 1));
    const view = (await api("GET", path.replace("/redeliver", ""))).json() as DeliveryView;
    assert.equal(view.status, "succeeded");
    await api("DELETE", `/api/webhooks/endpoints/${created.endpointId}`);
  });

  test("an endpoint failing for too long is disabled, with an event to the others; enabling it again resumes", async () => {
    const watcher = await endpoint("/watcher", ["webhook.endpoint_disabled"]);
    const broken = await endpoint("/never", ["command.done"]);
    await api("PATCH", `/api/webhooks/endpoints/${broken.endpointId}`, { url: await closedUrl() });
    let now = Date.now();
    const replica = dispatcher({
      now: () => now,
      retryBaseMs: 1000,
      retryMaxMs: 60_000,
      disableAfterMs: 600_000,
      disableAfterFailures: 5,
    });
    await publisher().publish(acme.tenantId, "command.done", "disable-1", { at: now });
    await publisher().publish(acme.tenantId, "command.done", "disable-2", { at: now });
    for (let pass = 0; pass < 40; pass++) {
      await replica.drain();
      const view = (await api("GET", `/api/webhooks/endpoints/${broken.endpointId}`)).json() as EndpointView;
      if (view.disabled) break;
      now += 60_000;
    }
    const view = (await api("GET", `/api/webhooks/endpoints/${broken.endpointId}`)).json() as EndpointView;
    assert.ok(view.disabled, "disabled");
    assert.match(view.disabled.reason, /^every delivery failed for \d+ h \(\d+ attempts\)$/);
    assert.equal(view.enabled, true, "the owner's switch is untouched");
    assert.ok(view.health.consecutiveFailures >= 5);
    const dead = (await api("GET", `/api/webhooks/endpoints/${broken.endpointId}/deliveries?status=dead`)).json();
    assert.equal(dead.items.length, 2, "its queued deliveries are dead-lettered");
    await replica.drain();
    const [notice] = deliveriesTo("/watcher");
    assert.ok(notice, "the organization's other endpoint heard of it");
    const event = JSON.parse(notice.body);
    assert.equal(event.type, "webhook.endpoint_disabled");
    assert.equal(event.data.endpointId, broken.endpointId);
    assert.equal(signatureValid(notice.headers, notice.body, watcher.secret), true);

    // Disabled: new events are not queued for it. Enabled again (fixed URL): they are.
    await publisher().publish(acme.tenantId, "command.done", "disable-3", { at: now });
    await replica.drain();
    assert.equal(await cloud.db.collection("webhook_pending").countDocuments({ endpointId: broken.endpointId }), 0);
    const enabled = await api("PATCH", `/api/webhooks/endpoints/${broken.endpointId}`, {
      url: `${receiver.url}/fixed`,
      enabled: true,
    });
    assert.equal(enabled.json().disabled, null);
    now = Date.now();
    await publisher().publish(acme.tenantId, "command.done", "disable-4", { at: now });
    await replica.drain();
    assert.equal(deliveriesTo("/fixed").length, 1);
    for (const { endpointId } of [watcher, broken]) await api("DELETE", `/api/webhooks/endpoints/${endpointId}`);
  });

  test("capabilities publish their events: a command's final ack, a finished scheduled export", async () => {
    const created = await endpoint("/domain", ["command.done", "command.failed", "export.ready"]);
    const command = await api("POST", "/api/devices/dev-1/commands", { name: "ping" });
    assert.equal(command.statusCode, 202, command.body);
    const commandId = command.json().id as string;
    const acks = {
      acks: [
        {
          deviceId: "dev-1",
          receivedAt: Date.now(),
          ack: { v: 1, id: commandId, status: "done", result: { uptime: 7 } },
        },
      ],
    };
    for (let i = 0; i < 2; i++) {
      const relayed = await api("POST", "/api/gateway/v1/command-acks", acks, acme.gatewayKey);
      assert.equal(relayed.statusCode, 200, relayed.body);
    }
    const schedule = await api("POST", "/api/exports/schedules", {
      name: "hourly",
      cron: "* * * * *",
      devices: ["dev-1"],
      rangeSeconds: 60,
      format: "csv",
      destination: { type: "download" },
    });
    assert.equal(schedule.statusCode, 201, schedule.body);
    const now = schedule.json().nextRunAt + 100;
    const [run] = await new ExportScheduler(cloud.db, logger, { secrets, now: () => now, allowedLatenessMs: 0 }).poll();
    assert.equal(run?.status, "succeeded", run?.error);
    await dispatcher().drain();
    const events = deliveriesTo("/domain").map((d) => JSON.parse(d.body));
    assert.deepEqual(
      events.map((event) => [event.type, event.data.commandId ?? event.data.runId]),
      [
        ["command.done", commandId],
        ["export.ready", run?._id],
      ],
    );
    assert.deepEqual(events[0].data.result, { uptime: 7 });
    assert.equal(events[1].data.fileUrl, `/api/exports/runs/${run?._id}/file`);
    await api("DELETE", `/api/webhooks/endpoints/${created.endpointId}`);
  });

  test("OTA campaigns publish their transitions and their devices' transitions, signed", async () => {
    const created = await endpoint("/ota", ["campaign.transition", "campaign.device_transition"]);
    assert.equal((await api("POST", "/api/signing/keys")).statusCode, 201);
    const image = buildEsp32Image({ chip: "esp32", version: "2.0.0", projectName: "kestrel" }, nodeSha256);
    const uploaded = await cloud.app.inject({
      method: "POST",
      url: "/api/artifacts?kind=firmware&name=kestrel-fw&chip=esp32",
      headers: { ...bearer(session), "content-type": "application/octet-stream" },
      payload: Buffer.from(image),
    });
    assert.equal(uploaded.statusCode, 201, uploaded.body);
    const { artifactId, sha256 } = uploaded.json();
    assert.equal((await api("POST", `/api/artifacts/${artifactId}/signatures`)).statusCode, 201);
    const campaign = await api("POST", "/api/campaigns", {
      name: "hooked",
      artifactId,
      target: { devices: ["dev-1"] },
    });
    assert.equal(campaign.statusCode, 201, campaign.body);
    const { campaignId } = campaign.json();
    const offers = await api(
      "POST",
      "/api/gateway/v1/artifacts/offers/poll",
      { devices: ["dev-1"], wait: 0 },
      acme.gatewayKey,
    );
    assert.equal(offers.json().offers.length, 1, offers.body);
    const report = {
      v: 1,
      campaign: campaignId,
      sha256,
      status: "failed",
      code: "tampered",
      reason: "SHA-256 differs",
    };
    const reported = await api(
      "POST",
      "/api/gateway/v1/artifact-reports",
      { reports: [{ deviceId: "dev-1", receivedAt: Date.now(), report }] },
      acme.gatewayKey,
    );
    assert.equal(reported.json().applied, 1, reported.body);
    await dispatcher().drain();

    const deliveries = deliveriesTo("/ota");
    for (const delivery of deliveries)
      assert.equal(signatureValid(delivery.headers, delivery.body, created.secret, 300), true);
    const events = deliveries.map((d) => JSON.parse(d.body));
    assert.ok(events.every((event) => event.organization === acme.tenantId && event.data.campaignId === campaignId));
    assert.deepEqual(
      events.map(({ type, data }) => [type, data.deviceId ?? null, data.from, data.to]),
      [
        ["campaign.transition", null, null, "running"],
        ["campaign.transition", null, null, "stage-started"],
        ["campaign.device_transition", "dev-1", "pending", "notified"],
        ["campaign.device_transition", "dev-1", "notified", "failed"],
        ["campaign.transition", null, "running", "halted"],
      ],
    );
    assert.deepEqual([events[3].data.code, events[3].data.detail], ["tampered", "SHA-256 differs"]);
    assert.match(events[4].data.detail, /1 of 1 devices failed/);
    assert.equal(events[1].data.stage, 1);
    await api("DELETE", `/api/webhooks/endpoints/${created.endpointId}`);
  });
});
