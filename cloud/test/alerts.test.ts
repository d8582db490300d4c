// Alerts end to end in one cloud: rules of every kind evaluated on what ingest receives (samples
// as the journal is applied, device states and system metrics in the engine), alerts with their
// history, acknowledgement and silences, and the notifications a partner's webhook receives.

import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { after, before, describe, test } from "node:test";
import type { AlertView, RuleView } from "../src/alerts/alert-schema.ts";
import type { Credentials } from "../src/tenants/bootstrap.ts";
import { bearer, bootstrapTenant, ingest, login, startTestCloud, type TestCloud } from "./helpers.ts";
import { type Receiver, signatureValid, startReceiver } from "./webhook-receiver.ts";

interface Notice {
  type: string;
  data: { alertId?: string; ruleId?: string; deviceId?: string | null; subject?: string; value?: number | null };
}

async function until<T>(probe: () => Promise<T | undefined> | T | undefined, what: string, ms = 20_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe("alerts", () => {
  let cloud: TestCloud;
  let acme: Credentials;
  let globex: Credentials;
  let session: string;
  let receiver: Receiver;
  let secret: string;
  const base = Date.now() - 10 * 60_000;
  const seqs = new Map<string, number>();

  const api = (method: "GET" | "POST" | "PATCH" | "DELETE", url: string, payload?: object, token = session) =>
    cloud.app.inject({ method, url, headers: bearer(token), ...(payload && { payload }) });

  /** Samples of one device at [seconds after base, value] of `metric`, in one ingest request. */
  async function send(deviceId: string, values: Array<[number, number]>, metric = "temperature") {
    const first = seqs.get(deviceId) ?? 0;
    seqs.set(deviceId, first + values.length);
    const samples = values.map(([s, v], i) => ({ seq: first + i, ts: base + s * 1000, m: { [metric]: v } }));
    const response = await ingest(cloud.app, acme.gatewayKey, {
      telemetry: [{ deviceId, batch: { v: 1, boot: 1, samples } }],
    });
    assert.equal(response.statusCode, 200, response.body);
  }

  async function state(deviceId: string, receivedAt: number, fields: object) {
    const response = await ingest(cloud.app, acme.gatewayKey, {
      states: [{ deviceId, receivedAt, state: { v: 1, ...fields } }],
    });
    assert.equal(response.statusCode, 200, response.body);
  }

  async function rule(body: object): Promise<RuleView> {
    const response = await api("POST", "/api/alerts/rules", body);
    assert.equal(response.statusCode, 201, response.body);
    return response.json();
  }

  /** Every notification the receiver got so far, each checked against the endpoint's secret. */
  function notices(match: (notice: Notice) => boolean): Notice[] {
    return receiver.deliveries
      .filter((delivery) => {
        assert.equal(signatureValid(delivery.headers, delivery.body, secret), true);
        return true;
      })
      .map((delivery) => JSON.parse(delivery.body) as Notice)
      .filter(match);
  }

  const ofRule = (ruleId: string) => (notice: Notice) => notice.data.ruleId === ruleId;

  async function alertsOf(ruleId: string): Promise<AlertView[]> {
    const response = await api("GET", `/api/alerts?ruleId=${ruleId}`);
    assert.equal(response.statusCode, 200, response.body);
    return response.json().items;
  }

  before(async () => {
    const secretsKey = randomBytes(32).toString("base64");
    cloud = await startTestCloud({
      SECRETS_KEY: secretsKey,
      WEBHOOK_ALLOWED_NETWORKS: "127.0.0.0/8",
      ALERT_SWEEP_SECONDS: "1",
    });
    acme = await bootstrapTenant(cloud.db, "Acme", ["dev-1", "dev-2", "dev-3", "dev-4"]);
    globex = await bootstrapTenant(cloud.db, "Globex", ["gx-1"]);
    session = await login(cloud.app, acme.admin.email);
    receiver = await startReceiver();
    const endpoint = await api("POST", "/api/webhooks/endpoints", {
      url: `${receiver.url}/alerts`,
      events: ["alert.fired", "alert.resolved", "device.online", "device.offline"],
    });
    assert.equal(endpoint.statusCode, 201, endpoint.body);
    secret = endpoint.json().secret;
    const tagged = await api("PATCH", "/api/devices/dev-1", { tags: ["greenhouse"] });
    assert.equal(tagged.statusCode, 200, tagged.body);
  });
  after(async () => {
    await cloud?.close();
    await receiver?.close();
  });

  test("threshold: fires after the hold, stays through values above the clear level, clears below it", async () => {
    const hot = await rule({
      name: "Greenhouse too hot",
      severity: "critical",
      scope: { type: "tag", tag: "greenhouse" },
      condition: { kind: "threshold", metric: "temperature", op: "above", high: 30, clearHigh: 28, forSeconds: 10 },
    });
    // dev-2 is not in the scope: its heat is not this rule's business.
    await send("dev-2", [[0, 45]]);
    await send("dev-1", [
      [0, 25],
      [1, 31],
      [6, 31],
    ]);
    await sleep(800);
    assert.equal(notices(ofRule(hot.ruleId)).length, 0, "held for 5 s of 10: nothing yet");
    await send("dev-1", [[11, 31.5]]);
    const [fired] = await until(
      () => notices(ofRule(hot.ruleId)).slice(0, 1)[0] && notices(ofRule(hot.ruleId)),
      "fired",
    );
    assert.equal(fired?.type, "alert.fired");
    assert.equal(fired?.data.deviceId, "dev-1");
    assert.equal(fired?.data.value, 31.5);

    // Hovering between the clear level and the line, repeatedly crossing the line: no flapping.
    await send("dev-1", [
      [12, 29],
      [13, 30.5],
      [14, 29.5],
      [15, 31],
      [16, 28.5],
    ]);
    await sleep(800);
    assert.equal(notices(ofRule(hot.ruleId)).length, 1);
    await send("dev-1", [[17, 27]]);
    const resolved = await until(
      () => notices(ofRule(hot.ruleId)).find((notice) => notice.type === "alert.resolved"),
      "resolved",
    );
    assert.equal(resolved.data.alertId, fired?.data.alertId);
    assert.equal(resolved.data.value, 27);

    // A late sample (older than what was evaluated) does not fire again, nor does a replay.
    await send("dev-1", [[5, 50]]);
    await send("dev-1", [[11, 31.5]]);
    await sleep(800);
    assert.equal(notices(ofRule(hot.ruleId)).length, 2, "exactly one notification per state change");
    const [alert, ...others] = await alertsOf(hot.ruleId);
    assert.equal(others.length, 0);
    assert.deepEqual(
      { status: alert?.status, value: alert?.value, resolvedValue: alert?.resolvedValue, deviceId: alert?.deviceId },
      { status: "resolved", value: 31.5, resolvedValue: 27, deviceId: "dev-1" },
    );
    assert.deepEqual(
      alert?.history.map((h) => h.status),
      ["firing", "resolved"],
    );
    const metrics = (await cloud.app.inject({ method: "GET", url: "/metrics" })).body;
    assert.match(metrics, /kestrel_cloud_alert_late_samples_total [1-9]/);
    assert.match(metrics, /kestrel_cloud_alert_evaluations_total\{kind="threshold"\} [1-9]/);
  });

  test("rate of change: fires on a fast rise, clears once it slows (its state stored)", async () => {
    const rising = await rule({
      name: "Pressure rising",
      condition: { kind: "rate", metric: "pressure", perMinute: 60, direction: "rise", windowSeconds: 60 },
    });
    // 30 hPa in 20 s is 90 a minute.
    await send(
      "dev-3",
      [
        [100, 1000],
        [110, 1000],
        [120, 1030],
      ],
      "pressure",
    );
    const fired = await until(() => notices(ofRule(rising.ruleId))[0], "fired");
    assert.deepEqual([fired.type, fired.data.deviceId, fired.data.value], ["alert.fired", "dev-3", 1030]);
    // Flat for a minute: the rate over the window falls to 0, under the clear level (half the rate).
    await send("dev-3", [[180, 1030]], "pressure");
    const resolved = await until(
      () => notices(ofRule(rising.ruleId)).find((notice) => notice.type === "alert.resolved"),
      "resolved",
    );
    assert.equal(resolved.data.alertId, fired.data.alertId);
    // The window's points are in the stored state.
    const stored = await cloud.db
      .collection<{ _id: string; packed: string }>("alert_sample_states")
      .findOne({ _id: `${acme.tenantId}|dev-3` });
    const states = JSON.parse(stored?.packed ?? "{}") as Record<string, { points?: unknown[] }>;
    assert.equal(states[rising.ruleId]?.points?.length, 2);
    const metrics = (await cloud.app.inject({ method: "GET", url: "/metrics" })).body;
    assert.match(metrics, /kestrel_cloud_alert_evaluations_total\{kind="rate"\} [1-9]/);
  });

  test("a device whose evaluation fails costs the other devices of the pass nothing", async () => {
    // More devices than the evaluator takes at once, all in one request (so one apply pass).
    const deviceIds = Array.from({ length: 40 }, (_, i) => `fl-${i}`);
    const fleet = await bootstrapTenant(cloud.db, "Fleet", deviceIds);
    const token = await login(cloud.app, fleet.admin.email);
    const created = await api(
      "POST",
      "/api/alerts/rules",
      { name: "Hot", condition: { kind: "threshold", metric: "temperature", op: "above", high: 30, forSeconds: 0 } },
      token,
    );
    assert.equal(created.statusCode, 201, created.body);
    // fl-0's stored state is one the evaluator cannot use: its evaluation fails every time.
    await cloud.db
      .collection<{ _id: string; tenantId: string; subject: string; rules: null }>("alert_sample_states")
      .insertOne({ _id: `${fleet.tenantId}|fl-0`, tenantId: fleet.tenantId, subject: "fl-0", rules: null });
    const response = await ingest(cloud.app, fleet.gatewayKey, {
      telemetry: deviceIds.map((deviceId) => ({
        deviceId,
        batch: { v: 1, boot: 1, samples: [{ seq: 0, ts: Date.now(), m: { temperature: 35 } }] },
      })),
    });
    assert.equal(response.statusCode, 200, response.body);
    const fired = await until(async () => {
      const list = await api("GET", `/api/alerts?ruleId=${created.json().ruleId}&limit=100`, undefined, token);
      const items = list.json().items as AlertView[];
      return items.length >= deviceIds.length - 1 ? items : undefined;
    }, "39 alerts");
    assert.deepEqual(fired.map((alert) => alert.deviceId).sort(), deviceIds.slice(1).sort());
    // fl-0 is tried again a few times (a write may fail for a moment), then counted as failed.
    const metrics = await until(async () => {
      const body = (await cloud.app.inject({ method: "GET", url: "/metrics" })).body;
      return /kestrel_cloud_alert_evaluation_errors_total [1-9]/.test(body) ? body : undefined;
    }, "the failure counted");
    assert.match(metrics, /kestrel_cloud_alert_evaluation_errors_total 1\n/);
  });

  test("firing → acknowledged (who, when) → resolved; a silence mutes the next firing's notifications", async () => {
    const cold = await rule({
      name: "Freezing",
      scope: { type: "device", deviceId: "dev-2" },
      condition: { kind: "threshold", metric: "temperature", op: "below", low: 0, forSeconds: 0 },
    });
    await send("dev-2", [[20, -1]]);
    await until(() => notices(ofRule(cold.ruleId))[0], "fired");
    const [open] = await alertsOf(cold.ruleId);
    assert.equal(open?.status, "firing");
    const ack = await api("POST", `/api/alerts/${open?.alertId}/acknowledge`, { note: "heater on its way" });
    assert.equal(ack.statusCode, 200, ack.body);
    const acknowledged = ack.json() as AlertView;
    assert.equal(acknowledged.status, "acknowledged");
    assert.equal(acknowledged.acknowledgedBy, acme.admin.email);
    assert.ok(acknowledged.acknowledgedAt);
    assert.equal((await api("POST", `/api/alerts/${open?.alertId}/acknowledge`, {})).statusCode, 409);
    const listed = await api("GET", "/api/alerts?status=acknowledged");
    assert.ok((listed.json().items as AlertView[]).some((item) => item.alertId === open?.alertId));

    await send("dev-2", [[21, 5]]);
    await until(() => notices(ofRule(cold.ruleId)).find((n) => n.type === "alert.resolved"), "resolved");
    const view = (await api("GET", `/api/alerts/${open?.alertId}`)).json() as AlertView;
    assert.deepEqual(
      view.history.map((h) => [h.status, h.by]),
      [
        ["firing", null],
        ["acknowledged", acme.admin.email],
        ["resolved", null],
      ],
    );
    assert.equal((await api("POST", `/api/alerts/${open?.alertId}/acknowledge`, {})).statusCode, 409);

    const silence = await api("POST", "/api/alerts/silences", {
      deviceId: "dev-2",
      endsAt: Date.now() + 3_600_000,
      comment: "maintenance",
    });
    assert.equal(silence.statusCode, 201, silence.body);
    assert.equal(silence.json().active, true);
    await send("dev-2", [[22, -3]]);
    const muted = await until(async () => (await alertsOf(cold.ruleId)).find((a) => a.status === "firing"), "2nd");
    assert.equal(muted.silenced, true);
    await sleep(800);
    assert.equal(notices(ofRule(cold.ruleId)).length, 2, "the silenced firing sent nothing");
    const silences = (await api("GET", "/api/alerts/silences")).json().items;
    assert.equal(silences.length, 1);
    assert.equal((await api("DELETE", `/api/alerts/silences/${silence.json().silenceId}`)).statusCode, 204);
  });

  test("device states: online/offline events, offline for a duration, safe mode, watchdog resets", async () => {
    const offline = await rule({ name: "Gone", condition: { kind: "offline", forSeconds: 2 } });
    const safe = await rule({ name: "Safe mode", condition: { kind: "safe_mode" } });
    const resets = await rule({
      name: "Reset loop",
      scope: { type: "device", deviceId: "dev-3" },
      condition: { kind: "watchdog_resets", count: 1, windowSeconds: 3600 },
    });
    const now = Date.now();
    await state("dev-3", now, { online: true, boot: 1, reset: "power-on", mode: "normal" });
    await state("dev-3", now + 1, { online: true, boot: 2, reset: "watchdog", mode: "normal" });
    await state("dev-3", now + 2, { online: true, boot: 3, reset: "watchdog", mode: "safe" });
    const resetAlert = await until(() => notices(ofRule(resets.ruleId))[0], "watchdog resets fired");
    assert.equal(resetAlert.data.value, 2);
    const safeFired = await until(() => notices(ofRule(safe.ruleId))[0], "safe mode fired");
    assert.equal(safeFired.data.deviceId, "dev-3");
    await state("dev-3", now + 3, { online: true, mode: "normal" });
    await until(() => notices(ofRule(safe.ruleId)).find((n) => n.type === "alert.resolved"), "safe mode resolved");
    // A retried, older state changes nothing.
    await state("dev-3", now + 2, { online: true, boot: 3, reset: "watchdog", mode: "safe" });

    // The last will: offline at once as an event, as an alert once it lasted the rule's 2 s.
    await state("dev-3", now + 4, { online: false });
    await until(() => notices((n) => n.type === "device.offline" && n.data.deviceId === "dev-3")[0], "offline event");
    const gone = await until(() => notices(ofRule(offline.ruleId)).find((n) => n.data.deviceId === "dev-3"), "gone");
    assert.equal(gone.type, "alert.fired");
    assert.ok((gone.data.value ?? 0) >= 2);
    await state("dev-3", Date.now(), { online: true });
    await send("dev-3", [[599, 20]]);
    await until(
      () => notices(ofRule(offline.ruleId)).find((n) => n.type === "alert.resolved" && n.data.deviceId === "dev-3"),
      "back",
    );
    // The offline rule may resolve (on the telemetry's last-seen) before the engine has the state: both come.
    const connection = () => notices((n) => n.data.deviceId === "dev-3" && n.type.startsWith("device."));
    const online = await until(() => (connection().length >= 3 ? connection() : undefined), "online again");
    assert.deepEqual(
      online.map((n) => n.type),
      ["device.online", "device.offline", "device.online"],
    );
    await sleep(500);
    assert.equal(notices(ofRule(safe.ruleId)).length, 2);
    for (const { ruleId } of [offline, safe, resets]) {
      assert.equal((await api("DELETE", `/api/alerts/rules/${ruleId}`)).statusCode, 204);
    }
  });

  test("system rule: a gateway's reported queue depth fires and clears per gateway", async () => {
    const backlog = await rule({
      name: "Uplink backlog",
      condition: {
        kind: "system",
        metric: "gateway_queue_depth",
        op: "above",
        high: 100,
        clearHigh: 10,
        forSeconds: 0,
      },
    });
    const report = (pending: number) =>
      cloud.app.inject({
        method: "POST",
        url: "/api/gateway/v1/uplink-status",
        headers: bearer(acme.gatewayKey),
        payload: { gatewayId: "site-1", uplink: { pending, oldestAt: Date.now() - pending * 10, at: Date.now() } },
      });
    assert.equal((await report(500)).statusCode, 204);
    const fired = await until(() => notices(ofRule(backlog.ruleId))[0], "backlog fired");
    assert.equal(fired.data.subject, "gateway:site-1");
    assert.equal(fired.data.value, 500);
    await report(50);
    await sleep(1500);
    assert.equal(notices(ofRule(backlog.ruleId)).length, 1, "between the levels: still firing");
    await report(5);
    await until(() => notices(ofRule(backlog.ruleId)).find((n) => n.type === "alert.resolved"), "backlog cleared");
  });

  test("rules are validated, and another organization's are not found", async () => {
    for (const condition of [
      { kind: "threshold", metric: "temperature", op: "above", high: 30, clearHigh: 31, forSeconds: 0 },
      { kind: "threshold", metric: "temperature", op: "above", forSeconds: 0 },
      { kind: "system", metric: "nonsense", op: "above", high: 1 },
      { kind: "telepathy" },
    ]) {
      const response = await api("POST", "/api/alerts/rules", { name: "bad", condition });
      assert.equal(response.statusCode, 400, JSON.stringify(condition));
    }
    const rate = await rule({ name: "Rising", condition: { kind: "rate", metric: "temperature", perMinute: 2 } });
    assert.deepEqual(rate.condition, {
      kind: "rate",
      metric: "temperature",
      perMinute: 2,
      direction: "either",
      windowSeconds: 60,
    });
    const mine = await rule({ name: "Mine", condition: { kind: "safe_mode" } });
    const other = await login(cloud.app, globex.admin.email);
    assert.equal((await api("GET", `/api/alerts/rules/${mine.ruleId}`, undefined, other)).statusCode, 404);
    assert.equal((await api("GET", "/api/alerts/rules", undefined, other)).json().items.length, 0);
    const patched = await api("PATCH", `/api/alerts/rules/${mine.ruleId}`, { enabled: false });
    assert.equal(patched.json().enabled, false);
  });
});
