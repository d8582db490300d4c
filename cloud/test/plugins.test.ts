// Plugin assignments on the real app and FerretDB: a signed version assigned with its config becomes
// a plugin campaign whose offers carry the config; config checked as the device checks it; one
// assignment of a plugin per device; a config change rewrites the pending offers and sends commands
// to the devices that have the plugin; an upgrade and a rollback are new deliveries (the rollback
// with a signed downgrade grant); a device's outcome is a webhook event; removal sends plugin-remove.
// Plugins never go through the plain campaign route.

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { parseArtifactOffer } from "@kestrel/wire/artifacts";
import type { FastifyInstance } from "fastify";
import { withCustomSection } from "../../firmware/plugins/wasm-sections.ts";
import type { Credentials } from "../src/tenants/bootstrap.ts";
import { bearer, bootstrapTenant, login, startTestCloud, type TestCloud } from "./helpers.ts";

const DEVICES = ["p-1", "p-2", "p-3"];
const WASM = readFileSync(join(import.meta.dirname, "..", "..", "firmware", "build", "plugins", "dewpoint.wasm"));

async function uploadSigned(app: FastifyInstance, token: string, version: string, bytes: Buffer) {
  const uploaded = await app.inject({
    method: "POST",
    url: `/api/artifacts?kind=plugin&name=dewpoint&version=${version}&metrics=dew_point`,
    headers: { ...bearer(token), "content-type": "application/octet-stream" },
    payload: bytes,
  });
  assert.equal(uploaded.statusCode, 201, uploaded.body);
  const signed = await app.inject({
    method: "POST",
    url: `/api/artifacts/${uploaded.json().artifactId}/signatures`,
    headers: bearer(token),
  });
  assert.equal(signed.statusCode, 201, signed.body);
  return uploaded.json<{ artifactId: string; sha256: string }>();
}

describe("plugin assignments", () => {
  let cloud: TestCloud;
  let acme: Credentials;
  let token: string;

  const call = async (method: "GET" | "POST" | "PATCH" | "DELETE", url: string, payload?: object) => {
    const response = await cloud.app.inject({ method, url, headers: bearer(token), payload });
    return { status: response.statusCode, body: response.body === "" ? {} : response.json() };
  };
  const gateway = (url: string, payload: object) =>
    cloud.app.inject({ method: "POST", url, headers: bearer(acme.gatewayKey), payload });
  const offers = async () => {
    const response = await gateway("/api/gateway/v1/artifacts/offers/poll", { devices: DEVICES, wait: 0 });
    assert.equal(response.statusCode, 200, response.body);
    return response
      .json<{ offers: Array<{ deviceId: string; offer: unknown }> }>()
      .offers.map(({ deviceId, offer }) => {
        const parsed = parseArtifactOffer(JSON.stringify(offer));
        assert.ok(parsed.ok, parsed.ok ? "" : parsed.error.message);
        return { deviceId, offer: parsed.value };
      });
  };
  const report = async (deviceId: string, campaign: string, sha256: string, status: string, extra = {}) => {
    const response = await gateway("/api/gateway/v1/artifact-reports", {
      reports: [{ deviceId, receivedAt: Date.now(), report: { v: 1, campaign, sha256, status, ...extra } }],
    });
    assert.equal(response.json().applied, 1, response.body);
  };
  const commandNames = async (deviceId: string) =>
    (await call("GET", `/api/devices/${deviceId}/commands`)).body.items.map(
      (item: { name: string; params: Record<string, unknown> }) => `${item.name} ${JSON.stringify(item.params)}`,
    );

  before(async () => {
    // No dispatcher: the outbox keeps the events for the test to read.
    cloud = await startTestCloud({ OTA_OFFER_LEASE_MS: "60000", WEBHOOK_DISPATCHER: "off" });
    acme = await bootstrapTenant(cloud.db, "Acme", DEVICES);
    token = await login(cloud.app, acme.admin.email);
    assert.equal((await call("POST", "/api/signing/keys")).status, 201);
  });
  after(() => cloud?.close());

  test("assign, change, upgrade, roll back, remove", async () => {
    const v1 = await uploadSigned(cloud.app, token, "1.0.0", WASM);
    const plain = await call("POST", "/api/campaigns", {
      name: "x",
      artifactId: v1.artifactId,
      target: { devices: ["p-1"] },
    });
    assert.equal(plain.status, 409);
    assert.equal(plain.body.code, "use_plugin_assignment");

    const badConfig = await call("POST", "/api/plugins/dewpoint/assignments", {
      version: "1.0.0",
      target: { devices: ["p-1"] },
      config: { name: 1 },
    });
    assert.equal(badConfig.status, 400, JSON.stringify(badConfig.body));
    const missing = await call("POST", "/api/plugins/dewpoint/assignments", {
      version: "9.0.0",
      target: { devices: ["p-1"] },
    });
    assert.equal(missing.body.code, "plugin_version_not_found");

    const assigned = await call("POST", "/api/plugins/dewpoint/assignments", {
      version: "1.0.0",
      target: { devices: ["p-1", "p-2"] },
      config: { fahrenheit: 0 },
    });
    assert.equal(assigned.status, 201, JSON.stringify(assigned.body));
    const { assignmentId, campaignId } = assigned.body;
    const overlap = await call("POST", "/api/plugins/dewpoint/assignments", {
      version: "1.0.0",
      target: { devices: ["p-2", "p-3"] },
    });
    assert.equal(overlap.status, 409);
    assert.equal(overlap.body.code, "devices_assigned");

    const first = await offers();
    assert.deepEqual(first.map((item) => item.deviceId).sort(), ["p-1", "p-2"]);
    assert.deepEqual(first[0]?.offer.plugin, { config: { fahrenheit: 0 }, enabled: true });
    assert.equal(first[0]?.offer.windowS, 0);
    await report("p-1", campaignId, v1.sha256, "confirmed", { running: "1.0.0" });
    const events = await cloud.db.collection("event_outbox").find({ type: "plugin.installed" }).toArray();
    assert.equal(events.length, 1);
    assert.deepEqual(
      { deviceId: events[0]?.data.deviceId, plugin: events[0]?.data.plugin, version: events[0]?.data.version },
      { deviceId: "p-1", plugin: "dewpoint", version: "1.0.0" },
    );

    // p-1 has it: a command; p-2 has not answered: its next offer carries the new settings.
    const changed = await call("PATCH", `/api/plugins/dewpoint/assignments/${assignmentId}`, {
      config: { fahrenheit: 1 },
      enabled: false,
    });
    assert.equal(changed.status, 200, JSON.stringify(changed.body));
    assert.deepEqual(await commandNames("p-1"), [
      'plugin-disable {"name":"dewpoint"}',
      'plugin-config {"name":"dewpoint","fahrenheit":1}',
    ]);
    assert.deepEqual(await commandNames("p-2"), []);
    const campaign = await cloud.db.collection("campaigns").findOne({ campaignId });
    assert.deepEqual(campaign?.plugin, { name: "dewpoint", assignmentId, config: { fahrenheit: 1 }, enabled: false });

    const v2 = await uploadSigned(cloud.app, token, "2.0.0", withCustomSection(WASM, "v2"));
    const upgraded = await call("POST", `/api/plugins/dewpoint/assignments/${assignmentId}/upgrade`, {
      version: "2.0.0",
    });
    assert.equal(upgraded.status, 200, JSON.stringify(upgraded.body));
    assert.deepEqual([upgraded.body.version, upgraded.body.previousVersion], ["2.0.0", "1.0.0"]);
    assert.equal((await call("GET", `/api/campaigns/${campaignId}`)).body.status, "cancelled");
    const second = await offers();
    assert.equal(second.length, 2);
    assert.ok(second.every(({ offer }) => offer.plugin?.enabled === false && offer.downgrade === undefined));
    assert.equal(JSON.parse(second[0]?.offer.manifest.text ?? "{}").sha256, v2.sha256);

    const back = await call("POST", `/api/plugins/dewpoint/assignments/${assignmentId}/rollback`);
    assert.deepEqual([back.body.version, back.body.previousVersion], ["1.0.0", "2.0.0"]);
    const third = await offers();
    assert.ok(
      third.every(({ offer }) => offer.downgrade !== undefined),
      "a rollback carries the signed grant",
    );

    const view = await call("GET", "/api/plugins/dewpoint");
    assert.deepEqual(view.body.telemetryMetrics, ["dewpoint__dew_point"]);
    assert.deepEqual(
      view.body.versions.map((version: { version: string }) => version.version),
      ["2.0.0", "1.0.0"],
    );
    assert.equal(view.body.totals.devices, 2);
    assert.deepEqual((await call("GET", "/api/plugins")).body.items, [
      { name: "dewpoint", latestVersion: "2.0.0", versions: 2, assignments: 1 },
    ]);

    assert.equal((await call("DELETE", `/api/plugins/dewpoint/assignments/${assignmentId}`)).status, 204);
    for (const deviceId of ["p-1", "p-2"])
      assert.ok((await commandNames(deviceId)).includes('plugin-remove {"name":"dewpoint"}'), deviceId);
    assert.equal(
      (await call("PATCH", `/api/plugins/dewpoint/assignments/${assignmentId}`, { enabled: true })).status,
      404,
    );
    assert.deepEqual((await call("GET", "/api/plugins/dewpoint")).body.assignments, []);
  });
});
