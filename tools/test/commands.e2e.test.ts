// End to end: a command sent through the cloud API travels the long poll to the
// gateway, is published to a simulated device running the real firmware in XS,
// runs there once, and its acks come back until the API shows the outcome.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import type { CommandStatus, CommandView } from "@kestrel/cloud";
import { type Platform, startPlatform } from "../src/platform.ts";
import { CloudApi, silent, tempDir, until } from "./helpers.ts";

const FINAL: readonly CommandStatus[] = ["done", "failed", "expired"];

describe("commands end to end", () => {
  let platform: Platform;
  let api: CloudApi;
  let deviceId: string;

  before(async () => {
    // Mutual TLS here (the other end-to-end test uses tokens over TLS): the device proves its id with its certificate.
    platform = await startPlatform({
      dataDir: await tempDir("commands-e2e"),
      deviceCount: 1,
      logger: silent,
      mutualTls: true,
    });
    api = new CloudApi(platform.cloudUrl);
    await api.login(platform.credentials.admin.email, platform.credentials.admin.password);
    const [device] = platform.devices;
    assert.ok(device);
    deviceId = device.deviceId;
    await device.connected;
    const { metrics } = platform.gateway;
    assert.ok((await metrics.value("kestrel_gateway_connections_total", { auth: "certificate" })) >= 1);
    assert.equal(await metrics.value("kestrel_gateway_connections_total", { auth: "token" }), 0);
  });

  after(async () => {
    await platform?.stop();
  });

  const send = (payload: object) =>
    api.request("POST", `/api/devices/${deviceId}/commands`, payload) as Promise<CommandView>;

  const outcome = (id: string) =>
    until(
      async () => {
        const view = (await api.request("GET", `/api/devices/${deviceId}/commands/${id}`)) as CommandView;
        return FINAL.includes(view.status) ? view : undefined;
      },
      `command ${id} to finish`,
      30_000,
    );

  test("a ping sent through the API is done on the device and shows every step", async () => {
    const queued = await send({ name: "ping" });
    assert.equal(queued.status, "queued");
    const view = await outcome(queued.id);
    assert.equal(view.status, "done");
    assert.equal(typeof view.result?.uptime, "number");
    assert.equal(typeof view.result?.boot, "number");
    assert.deepEqual(
      view.history.map((h) => h.status),
      ["queued", "sent", "delivered", "done"],
    );
  });

  test("identify runs once: the LED blinks one sequence and the outcome carries the device's result", async () => {
    const device = platform.devices[0];
    assert.ok(device);
    const before = device.gpio.levels.length;
    const view = await outcome((await send({ name: "identify", params: { seconds: 1 } })).id);
    assert.equal(view.status, "done");
    assert.deepEqual(view.result, { seconds: 1 });
    await until(async () => (device.gpio.levels.length >= before + 5 ? true : undefined), "the blinking");
    assert.deepEqual(
      device.gpio.levels.slice(before).map((level) => level.value),
      [1, 0, 1, 0, 0],
    );
  });

  test("a command the device cannot carry out is failed with the device's reason", async () => {
    const view = await outcome((await send({ name: "identify", params: { seconds: 600 } })).id);
    assert.equal(view.status, "failed");
    assert.match(view.reason ?? "", /seconds must be an integer/);
    const list = (await api.request("GET", `/api/devices/${deviceId}/commands`)) as { items: CommandView[] };
    assert.deepEqual(
      list.items.map((c) => c.status),
      ["failed", "done", "done"],
      "newest first, one entry per command sent",
    );
  });
});
