import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import type { LightMyRequestResponse } from "fastify";
import type { CommandView } from "../src/commands/command-view.ts";
import type { Credentials } from "../src/tenants/bootstrap.ts";
import { addMember, bearer, bootstrapTenant, login, startTestCloud, type TestCloud } from "./helpers.ts";

interface Claimed {
  deviceId: string;
  command: { v: number; id: string; name: string; params?: Record<string, unknown>; expiresAt: number };
}

describe("commands", () => {
  let cloud: TestCloud;
  let acme: Credentials;
  let globex: Credentials;
  let admin: string;
  let viewer: string;
  let globexAdmin: string;

  before(async () => {
    cloud = await startTestCloud();
    acme = await bootstrapTenant(cloud.db, "Acme", ["dev-1", "dev-2", "dev-3"]);
    globex = await bootstrapTenant(cloud.db, "Globex", ["gx-1"]);
    admin = await login(cloud.app, acme.admin.email);
    globexAdmin = await login(cloud.app, globex.admin.email);
    await addMember(cloud.db, acme.tenantId, "viewer@acme.test", "viewer");
    viewer = await login(cloud.app, "viewer@acme.test");
  });
  after(() => cloud?.close());

  const send = (session: string, deviceId: string, payload: object) =>
    cloud.app.inject({
      method: "POST",
      url: `/api/devices/${deviceId}/commands`,
      headers: bearer(session),
      payload,
    });
  const sendOk = async (deviceId: string, payload: object): Promise<CommandView> => {
    const response = await send(admin, deviceId, payload);
    assert.equal(response.statusCode, 202, response.body);
    return response.json<CommandView>();
  };
  const get = (session: string, url: string) => cloud.app.inject({ method: "GET", url, headers: bearer(session) });
  const status = async (deviceId: string, id: string): Promise<CommandView> => {
    const response = await get(admin, `/api/devices/${deviceId}/commands/${id}`);
    assert.equal(response.statusCode, 200, response.body);
    return response.json<CommandView>();
  };
  const poll = async (key: string, devices: string[], wait = 0): Promise<Claimed[]> => {
    const response = await cloud.app.inject({
      method: "POST",
      url: "/api/gateway/v1/commands/poll",
      headers: bearer(key),
      payload: { devices, wait },
    });
    assert.equal(response.statusCode, 200, response.body);
    return response.json<{ commands: Claimed[] }>().commands;
  };
  const acks = (key: string, items: object[]): Promise<LightMyRequestResponse> =>
    cloud.app.inject({
      method: "POST",
      url: "/api/gateway/v1/command-acks",
      headers: bearer(key),
      payload: { acks: items },
    });

  test("an admin's command is queued with a random URL-safe id, an expiry and its history", async () => {
    const before = Date.now();
    const view = await sendOk("dev-1", { name: "set-config", params: { interval_s: 30 }, ttlSeconds: 120 });
    assert.match(view.id, /^[A-Za-z0-9_-]{22}$/);
    assert.equal(view.status, "queued");
    assert.equal(view.deviceId, "dev-1");
    assert.deepEqual(view.params, { interval_s: 30 });
    assert.ok(view.expiresAt >= before + 120_000 && view.expiresAt <= Date.now() + 120_000);
    assert.deepEqual(
      view.history.map((h) => h.status),
      ["queued"],
    );
    assert.deepEqual(await status("dev-1", view.id), view);
  });

  test("the list is newest first and honours limit", async () => {
    const first = await sendOk("dev-2", { name: "ping" });
    const second = await sendOk("dev-2", { name: "identify" });
    const response = await get(admin, "/api/devices/dev-2/commands?limit=1");
    assert.equal(response.statusCode, 200, response.body);
    assert.deepEqual(
      response.json<{ items: CommandView[] }>().items.map((c) => c.id),
      [second.id],
    );
    const all = (await get(admin, "/api/devices/dev-2/commands")).json<{ items: CommandView[] }>().items;
    assert.deepEqual(
      all.map((c) => c.id),
      [second.id, first.id],
    );
    assert.equal((await get(admin, "/api/devices/dev-2/commands?limit=0")).statusCode, 400);
  });

  test("unknown names, bad params and extra fields are refused with 400", async () => {
    for (const payload of [
      { name: "self-destruct" },
      { name: "set-config", params: { "Bad-Name": 1 } },
      { name: "set-config", params: { nested: { a: 1 } } },
      { name: "ping", ttlSeconds: 0 },
      { name: "ping", extra: true },
    ]) {
      const response = await send(admin, "dev-1", payload);
      assert.equal(response.statusCode, 400, JSON.stringify(payload));
      assert.equal(response.json().code, "invalid_request");
    }
  });

  test("a viewer may read commands but not send them", async () => {
    const response = await send(viewer, "dev-1", { name: "ping" });
    assert.equal(response.statusCode, 403);
    assert.equal(response.json().code, "forbidden");
    assert.equal((await get(viewer, "/api/devices/dev-1/commands")).statusCode, 200);
  });

  test("another tenant's device and commands answer 404, to operators and gateways alike", async () => {
    const mine = await sendOk("dev-1", { name: "ping" });
    assert.equal((await send(globexAdmin, "dev-1", { name: "ping" })).statusCode, 404);
    assert.equal((await send(admin, "gx-1", { name: "ping" })).json().code, "device_not_found");
    assert.equal((await get(globexAdmin, "/api/devices/dev-1/commands")).statusCode, 404);
    const foreign = await get(globexAdmin, `/api/devices/dev-1/commands/${mine.id}`);
    assert.equal(foreign.statusCode, 404);
    assert.equal(foreign.json().code, "command_not_found");
    assert.deepEqual(await poll(globex.gatewayKey, ["dev-1"]), []);
    const ack = await acks(globex.gatewayKey, [
      { deviceId: "dev-1", receivedAt: Date.now(), ack: { v: 1, id: mine.id, status: "done" } },
    ]);
    assert.deepEqual(ack.json(), { applied: 0, ignored: 1, rejected: [] });
    assert.equal((await status("dev-1", mine.id)).status, "queued");
  });

  test("the gateway API needs a gateway key: a user session is refused", async () => {
    const response = await cloud.app.inject({
      method: "POST",
      url: "/api/gateway/v1/commands/poll",
      headers: bearer(admin),
      payload: { devices: ["dev-1"] },
    });
    assert.equal(response.statusCode, 403);
    assert.equal(response.json().code, "forbidden");
  });

  test("a gateway claims only its connected devices' commands, each once, and acks walk them to done", async () => {
    const view = await sendOk("dev-3", { name: "identify" });
    assert.deepEqual(await poll(acme.gatewayKey, ["dev-9"]), []);
    const claimed = await poll(acme.gatewayKey, ["dev-3"]);
    assert.deepEqual(claimed, [
      { deviceId: "dev-3", command: { v: 1, id: view.id, name: "identify", expiresAt: view.expiresAt } },
    ]);
    assert.equal((await status("dev-3", view.id)).status, "queued", "claimed, not yet published");
    assert.deepEqual(await poll(acme.gatewayKey, ["dev-3"]), [], "a claimed command is not handed out twice");

    const at = Date.now();
    const published = await acks(acme.gatewayKey, [
      { deviceId: "dev-3", receivedAt: at - 1, delivery: { id: view.id, outcome: "published" } },
    ]);
    assert.deepEqual(published.json(), { applied: 1, ignored: 0, rejected: [] });
    assert.equal((await status("dev-3", view.id)).status, "sent");
    const accepted = await acks(acme.gatewayKey, [
      { deviceId: "dev-3", receivedAt: at, ack: { v: 1, id: view.id, status: "accepted" } },
    ]);
    assert.deepEqual(accepted.json(), { applied: 1, ignored: 0, rejected: [] });
    assert.equal((await status("dev-3", view.id)).status, "delivered");

    const done = await acks(acme.gatewayKey, [
      { deviceId: "dev-3", receivedAt: at + 5, ack: { v: 1, id: view.id, status: "done", result: { blinks: 3 } } },
      { deviceId: "dev-3", receivedAt: at + 6, ack: { v: 1, id: view.id, status: "done" } },
      { deviceId: "dev-3", receivedAt: at + 7, ack: { v: 1, id: view.id, status: "accepted" } },
      { deviceId: "dev-3", receivedAt: at + 8, ack: { v: 1, id: view.id, status: "finished" } },
    ]);
    assert.equal(done.statusCode, 200, done.body);
    const body = done.json();
    assert.equal(body.applied, 1);
    assert.equal(body.ignored, 2, "a repeated or late ack changes nothing");
    assert.deepEqual(
      body.rejected.map((r: { index: number; code: string }) => [r.index, r.code]),
      [[3, "invalid_ack"]],
    );
    const final = await status("dev-3", view.id);
    assert.equal(final.status, "done");
    assert.deepEqual(final.result, { blinks: 3 });
    assert.deepEqual(
      final.history.map((h) => h.status),
      ["queued", "sent", "delivered", "done"],
    );
    assert.equal(final.history[3]?.at, at + 5);
  });

  test("a failed ack carries its reason; a device's `expired` refusal reads as expired", async () => {
    const failing = await sendOk("dev-1", { name: "set-config", params: { log_level: "loud" } });
    const refused = await sendOk("dev-1", { name: "reboot" });
    const response = await acks(acme.gatewayKey, [
      {
        deviceId: "dev-1",
        receivedAt: Date.now(),
        ack: { v: 1, id: failing.id, status: "failed", reason: "bad level" },
      },
      { deviceId: "dev-1", receivedAt: Date.now(), ack: { v: 1, id: refused.id, status: "failed", reason: "expired" } },
    ]);
    assert.equal(response.json().applied, 2);
    const failed = await status("dev-1", failing.id);
    assert.equal(failed.status, "failed");
    assert.equal(failed.reason, "bad level");
    assert.equal((await status("dev-1", refused.id)).status, "expired");
  });

  test("a command past its expiry reads as expired and is never handed to a gateway", async () => {
    const view = await sendOk("dev-2", { name: "ping", ttlSeconds: 60 });
    await cloud.db
      .collection("commands")
      .updateOne({ id: view.id }, { $set: { expiresAt: new Date(Date.now() - 1000) } });
    const read = await status("dev-2", view.id);
    assert.equal(read.status, "expired");
    assert.deepEqual(
      read.history.map((h) => h.status),
      ["queued", "expired"],
    );
    const claimed = await poll(acme.gatewayKey, ["dev-2"]);
    assert.ok(!claimed.some((c) => c.command.id === view.id));
    const stored = await cloud.db.collection("commands").findOne({ id: view.id });
    assert.equal(stored?.status, "expired", "the claim records the expiry");
  });

  test("a command whose lease ran out without an ack is offered again, keeping its status", async () => {
    const view = await sendOk("dev-2", { name: "ping" });
    const first = await poll(acme.gatewayKey, ["dev-2"]);
    assert.ok(first.some((c) => c.command.id === view.id));
    await acks(acme.gatewayKey, [
      { deviceId: "dev-2", receivedAt: Date.now(), delivery: { id: view.id, outcome: "published" } },
    ]);
    await cloud.db
      .collection("commands")
      .updateOne({ id: view.id }, { $set: { leaseUntil: new Date(Date.now() - 1) } });
    const again = await poll(acme.gatewayKey, ["dev-2"]);
    assert.deepEqual(
      again.map((c) => c.command.id),
      [view.id],
    );
    const read = await status("dev-2", view.id);
    assert.equal(read.status, "sent");
    assert.deepEqual(
      read.history.map((h) => h.status),
      ["queued", "sent"],
    );
  });

  test("a command its gateway could not publish (device gone) stays queued and is handed out again at once", async () => {
    const view = await sendOk("dev-1", { name: "reboot" });
    const handed = async () => (await poll(acme.gatewayKey, ["dev-1"])).map((c) => c.command.id);
    assert.ok((await handed()).includes(view.id));
    const released = await acks(acme.gatewayKey, [
      { deviceId: "dev-1", receivedAt: Date.now(), delivery: { id: view.id, outcome: "not_connected" } },
    ]);
    assert.deepEqual(released.json(), { applied: 1, ignored: 0, rejected: [] });
    const read = await status("dev-1", view.id);
    assert.equal(read.status, "queued");
    assert.deepEqual(
      read.history.map((h) => h.status),
      ["queued"],
    );
    // The device is back: its next poll gets the command without waiting for the 60 s lease.
    assert.deepEqual(await handed(), [view.id]);
    // Published, then the connection went before any ack: released again, status stays sent.
    await acks(acme.gatewayKey, [
      { deviceId: "dev-1", receivedAt: Date.now(), delivery: { id: view.id, outcome: "published" } },
      { deviceId: "dev-1", receivedAt: Date.now(), delivery: { id: view.id, outcome: "connection_lost" } },
    ]);
    assert.equal((await status("dev-1", view.id)).status, "sent");
    assert.deepEqual(await handed(), [view.id]);
    await acks(acme.gatewayKey, [
      { deviceId: "dev-1", receivedAt: Date.now(), ack: { v: 1, id: view.id, status: "done" } },
    ]);
  });

  test("expired is final: a late ack is kept beside it and the history only grows", async () => {
    const view = await sendOk("dev-2", { name: "ping", ttlSeconds: 60 });
    await poll(acme.gatewayKey, ["dev-2"]);
    await acks(acme.gatewayKey, [
      { deviceId: "dev-2", receivedAt: Date.now(), delivery: { id: view.id, outcome: "published" } },
    ]);
    const expiresAt = new Date(Date.now() - 1000);
    await cloud.db.collection("commands").updateOne({ id: view.id }, { $set: { expiresAt } });
    const seen = await status("dev-2", view.id);
    assert.equal(seen.status, "expired");

    const lateAt = Date.now();
    const late = await acks(acme.gatewayKey, [
      { deviceId: "dev-2", receivedAt: lateAt - 5, ack: { v: 1, id: view.id, status: "accepted" } },
      { deviceId: "dev-2", receivedAt: lateAt, ack: { v: 1, id: view.id, status: "done", result: { uptime: 7 } } },
      { deviceId: "dev-2", receivedAt: lateAt + 1, ack: { v: 1, id: view.id, status: "failed", reason: "again" } },
    ]);
    assert.equal(late.statusCode, 200, late.body);
    const after = await status("dev-2", view.id);
    assert.equal(after.status, "expired");
    assert.deepEqual(after.late, { status: "done", at: lateAt, reason: null, result: { uptime: 7 } });
    assert.equal(after.result, null);
    assert.deepEqual(after.history, seen.history, "what a reader saw is still there, unchanged");
    assert.deepEqual(
      after.history.map((h) => [h.status, h.at]),
      [
        ["queued", seen.createdAt],
        ["sent", seen.history[1]?.at],
        ["expired", expiresAt.getTime()],
      ],
    );
    const published = await acks(acme.gatewayKey, [
      { deviceId: "dev-2", receivedAt: Date.now(), delivery: { id: view.id, outcome: "published" } },
    ]);
    assert.deepEqual(published.json(), { applied: 0, ignored: 1, rejected: [] });
  });

  test("concurrent polls hand a command to exactly one of them", async () => {
    const view = await sendOk("dev-1", { name: "identify" });
    const results = await Promise.all(Array.from({ length: 4 }, () => poll(acme.gatewayKey, ["dev-1"])));
    const handed = results.flat().filter((c) => c.command.id === view.id);
    assert.equal(handed.length, 1);
  });

  test("a waiting long poll answers with a command queued meanwhile", async () => {
    const waiting = poll(acme.gatewayKey, ["dev-3"], 20);
    const view = await sendOk("dev-3", { name: "ping" });
    const claimed = await waiting;
    assert.deepEqual(
      claimed.map((c) => c.command.id),
      [view.id],
    );
  });
});
