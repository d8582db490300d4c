// OTA campaigns on the real app and FerretDB, with the gateway's side played through its own API
// (offer polls and status reports): stages fill in order and only after the previous one soaked,
// offers carry a manifest and trust chain devices can verify, a stage that fails, rolls back or
// resets by watchdog too often halts the campaign, and operators pause, resume, cancel, advance.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { type ArtifactOffer, parseArtifactManifest, parseDowngradeGrant } from "@kestrel/wire/artifacts";
import { buildEsp32Image } from "@kestrel/wire/esp32-image";
import type { FastifyInstance } from "fastify";
import { nodeSha256 } from "../src/artifacts/validators.ts";
import { assignStages, judgeStage } from "../src/ota/rollout.ts";
import { verifyText } from "../src/signing/p256.ts";
import type { Credentials } from "../src/tenants/bootstrap.ts";
import { bearer, bootstrapTenant, ingest, login, startTestCloud, type TestCloud } from "./helpers.ts";

const DEVICES = Array.from({ length: 20 }, (_, i) => `dev-${String(i + 1).padStart(2, "0")}`);

async function until<T>(probe: () => Promise<T | undefined>, what: string, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

describe("rollout rules", () => {
  test("1 % → 10 % → 50 % → 100 % of 20 devices: stages of 1, 1, 8 and 10, shuffled per campaign", () => {
    const stages = [1, 10, 50, 100].map((percent) => ({ percent, soakSeconds: 0 }));
    const assigned = assignStages("cmp_a", DEVICES, stages);
    const sizes = [0, 0, 0, 0];
    for (const stage of assigned.values()) sizes[stage] = (sizes[stage] as number) + 1;
    assert.deepEqual(sizes, [1, 1, 8, 10]);
    assert.deepEqual(
      assignStages("cmp_a", [...DEVICES].reverse(), stages),
      assigned,
      "order of the list does not matter",
    );
    const other = assignStages("cmp_b", DEVICES, stages);
    assert.notDeepEqual(
      DEVICES.filter((d) => other.get(d) === 0),
      DEVICES.filter((d) => assigned.get(d) === 0),
      "another campaign starts with another device",
    );
  });

  test("a stage halts past a threshold, runs while devices work, soaks once done, then advances", () => {
    const thresholds = { failureRate: 0.1, rollbackRate: 0.1, watchdogRate: 0.1 };
    const stage = { index: 1, soakSeconds: 60 };
    const tally = (byStatus: Record<string, number>, extra = {}) => ({
      devices: 10,
      byStatus,
      stalled: 0,
      regressed: 0,
      ...extra,
    });
    assert.equal(judgeStage(stage, tally({ failed: 1, confirmed: 9 }), thresholds, 0, 0).kind, "soaking");
    const halt = judgeStage(stage, tally({ failed: 2, downloading: 8 }), thresholds, undefined, 0);
    assert.equal(halt.kind, "halt");
    assert.match((halt as { reason: string }).reason, /stage 2: 2 of 10 devices failed \(20% > 10%\)/);
    assert.equal(judgeStage(stage, tally({ "rolled-back": 2, confirmed: 8 }), thresholds, 0, 0).kind, "halt");
    assert.equal(judgeStage(stage, tally({ confirmed: 10 }, { regressed: 2 }), thresholds, 0, 0).kind, "halt");
    assert.equal(judgeStage(stage, tally({ confirmed: 5, downloading: 5 }), thresholds, undefined, 0).kind, "running");
    assert.equal(
      judgeStage(stage, tally({ confirmed: 5, downloading: 5 }, { stalled: 5 }), thresholds, 0, 1).kind,
      "soaking",
    );
    assert.equal(judgeStage(stage, tally({ confirmed: 10 }), thresholds, 0, 60_000).kind, "advance");
  });
});

describe("campaigns", () => {
  let cloud: TestCloud;
  let acme: Credentials;
  let token: string;
  let app: FastifyInstance;
  let publicKey: string;
  let artifact: { artifactId: string; sha256: string; size: number };

  before(async () => {
    cloud = await startTestCloud({ OTA_TICK_MS: "100", OTA_OFFER_LEASE_MS: "1500" });
    app = cloud.app;
    acme = await bootstrapTenant(cloud.db, "Acme", DEVICES);
    token = await login(app, acme.admin.email);
    publicKey = (await call("POST", "/api/signing/keys")).json().key.publicKey;
    artifact = await uploadSigned("1.1.0", 1);
  });
  after(() => cloud?.close());

  function call(method: "GET" | "POST" | "PATCH", url: string, payload?: object) {
    return app.inject({ method, url, headers: bearer(token), ...(payload ? { payload } : {}) });
  }

  async function uploadSigned(version: string, seed: number) {
    const bytes = Buffer.from(buildEsp32Image({ chip: "esp32", version, projectName: "kestrel", seed }, nodeSha256));
    const uploaded = await app.inject({
      method: "POST",
      url: "/api/artifacts?kind=firmware&name=kestrel-fw&chip=esp32",
      headers: { ...bearer(token), "content-type": "application/octet-stream" },
      payload: bytes,
    });
    assert.equal(uploaded.statusCode, 201, uploaded.body);
    const view = uploaded.json();
    assert.equal((await call("POST", `/api/artifacts/${view.artifactId}/signatures`)).statusCode, 201);
    return view;
  }

  async function create(body: object) {
    const response = await call("POST", "/api/campaigns", { artifactId: artifact.artifactId, ...body });
    assert.equal(response.statusCode, 201, response.body);
    return response.json();
  }

  async function poll(devices: string[]): Promise<Array<{ deviceId: string; offer: ArtifactOffer }>> {
    const response = await app.inject({
      method: "POST",
      url: "/api/gateway/v1/artifacts/offers/poll",
      headers: bearer(acme.gatewayKey),
      payload: { devices, wait: 0 },
    });
    assert.equal(response.statusCode, 200, response.body);
    return response.json().offers;
  }

  async function report(deviceId: string, campaign: string, status: string, extra: object = {}, sha = artifact.sha256) {
    const response = await app.inject({
      method: "POST",
      url: "/api/gateway/v1/artifact-reports",
      headers: bearer(acme.gatewayKey),
      payload: {
        reports: [{ deviceId, receivedAt: Date.now(), report: { v: 1, campaign, sha256: sha, status, ...extra } }],
      },
    });
    assert.equal(response.statusCode, 200, response.body);
    return response.json();
  }

  async function campaign(id: string) {
    return (await call("GET", `/api/campaigns/${id}`)).json();
  }

  async function cancel(id: string) {
    assert.equal((await call("POST", `/api/campaigns/${id}/cancel`)).statusCode, 200);
  }

  test("a staged rollout offers stage by stage, each only after the previous stage soaked", async () => {
    const created = await create({
      name: "to everyone",
      target: { devices: DEVICES },
      stages: [
        { percent: 5, soakSeconds: 1 },
        { percent: 25, soakSeconds: 0 },
        { percent: 100, soakSeconds: 0 },
      ],
      startWindowSeconds: 30,
    });
    assert.deepEqual(
      created.stages.map((s: { devices: number }) => s.devices),
      [1, 4, 15],
    );
    const first = await poll(DEVICES);
    assert.equal(first.length, 1, "only stage 1's device is offered");
    const offer = (first[0] as { offer: ArtifactOffer }).offer;
    assert.equal(offer.campaign, created.campaignId);
    assert.equal(offer.windowS, 30);
    assert.ok(verifyText(publicKey, offer.manifest.text, offer.manifest.sig), "the manifest verifies");
    const manifest = parseArtifactManifest(offer.manifest.text);
    assert.ok(manifest.ok);
    assert.equal(manifest.value.sha256, artifact.sha256);
    assert.deepEqual(await poll(DEVICES), [], "an offer is not repeated within its lease");

    const seen = new Set<string>();
    for (let stage = 0; stage < 3; stage++) {
      const offered = stage === 0 ? first : await until(nextOffers, `stage ${stage + 1} offers`);
      for (const { deviceId } of offered) {
        assert.ok(!seen.has(deviceId), `${deviceId} offered once`);
        seen.add(deviceId);
        for (const status of ["notified", "downloading", "verifying", "installed", "rebooting", "confirmed"])
          await report(
            deviceId,
            created.campaignId,
            status,
            status === "downloading" ? { bytes: 4096, total: artifact.size } : {},
          );
      }
      const expected = [1, 5, 20][stage] as number;
      assert.equal(seen.size, expected, `after stage ${stage + 1}`);
    }
    const done = await until(async () => {
      const view = await campaign(created.campaignId);
      return view.status === "completed" ? view : undefined;
    }, "completion");
    assert.equal(done.counts.confirmed, 20);
    assert.deepEqual(
      done.stages.map((s: { state: string }) => s.state),
      ["done", "done", "done"],
    );
    const history = (await call("GET", `/api/campaigns/${created.campaignId}/history`)).json().items;
    const stageStarts = history
      .filter((item: { to: string }) => item.to === "stage-started")
      .map((item: { code: string }) => item.code);
    assert.deepEqual(stageStarts, ["1", "2", "3"]);
    const oneDevice = (
      await call("GET", `/api/campaigns/${created.campaignId}/history?deviceId=${[...seen][0]}`)
    ).json().items;
    assert.deepEqual(
      oneDevice.map((item: { to: string }) => item.to),
      ["notified", "downloading", "verifying", "installed", "rebooting", "confirmed"],
    );

    async function nextOffers() {
      const offers = await poll(DEVICES);
      return offers.length > 0 ? offers : undefined;
    }
  });

  test("a stage that rolls back past its threshold halts the campaign; resuming forgives, cancelling frees the devices", async () => {
    const created = await create({
      name: "crashing build",
      target: { devices: DEVICES },
      stages: [
        { percent: 10, soakSeconds: 0 },
        { percent: 100, soakSeconds: 0 },
      ],
      thresholds: { rollbackRate: 0.5 },
    });
    const offers = await poll(DEVICES);
    assert.equal(offers.length, 2);
    const [a, b] = offers.map((offer) => offer.deviceId) as [string, string];
    await report(a, created.campaignId, "rolled-back", { code: "boot_failed", reason: "reset before confirming" });
    assert.equal((await campaign(created.campaignId)).status, "running", "1 of 2 (50%) is not past 50%");
    await report(b, created.campaignId, "rolled-back", { code: "boot_failed" });
    const halted = await campaign(created.campaignId);
    assert.equal(halted.status, "halted");
    assert.match(halted.haltReason, /stage 1: 2 of 2 devices rolled back/);
    assert.deepEqual(await poll(DEVICES), [], "a halted campaign offers nothing");
    const devices = (await call("GET", `/api/campaigns/${created.campaignId}/devices?status=rolled-back`)).json().items;
    assert.deepEqual(devices.map((d: { code: string }) => d.code).sort(), ["boot_failed", "boot_failed"]);

    const busy = await call("POST", "/api/campaigns", {
      name: "overlap",
      artifactId: artifact.artifactId,
      target: { devices: [a] },
    });
    assert.equal(busy.statusCode, 409, "a halted campaign still holds its devices");
    assert.equal(busy.json().code, "devices_in_campaign");

    assert.equal((await call("POST", `/api/campaigns/${created.campaignId}/resume`)).json().status, "running");
    await new Promise((resolve) => setTimeout(resolve, 300));
    assert.equal((await campaign(created.campaignId)).status, "running", "the forgiven rollbacks do not halt it again");
    await cancel(created.campaignId);
    assert.equal((await campaign(created.campaignId)).status, "cancelled");
    assert.equal((await call("POST", `/api/campaigns/${created.campaignId}/resume`)).statusCode, 409);
  });

  test("an updated device that resets by watchdog more than before the update halts the campaign", async () => {
    const created = await create({
      name: "watchdog regression",
      target: { devices: DEVICES.slice(0, 2) },
      stages: [{ percent: 100, soakSeconds: 60 }],
      thresholds: { watchdogRate: 0.4 },
    });
    const offers = await poll(DEVICES);
    assert.equal(offers.length, 2);
    for (const { deviceId } of offers) await report(deviceId, created.campaignId, "confirmed");
    const soaking = await until(async () => {
      const view = await campaign(created.campaignId);
      return view.stages[0].state === "soaking" ? view : undefined;
    }, "soak");
    assert.equal(soaking.status, "running");
    const [first, second] = offers.map((offer) => offer.deviceId) as [string, string];
    for (const [deviceId, boot] of [
      [first, 100],
      [second, 100],
    ] as const) {
      const state = { v: 1, online: true, boot, reset: "watchdog", fw: "1.1.0" };
      const response = await ingest(app, acme.gatewayKey, { states: [{ deviceId, receivedAt: Date.now(), state }] });
      assert.equal(response.statusCode, 200, response.body);
    }
    const halted = await until(async () => {
      const view = await campaign(created.campaignId);
      return view.status === "halted" ? view : undefined;
    }, "halt on watchdog resets");
    assert.match(halted.haltReason, /reset by watchdog more than before the update/);
    await cancel(created.campaignId);
  });

  test("pause stops offers; an offer with no report is made again after its lease; stale reports change nothing", async () => {
    const created = await create({
      name: "pausable",
      target: { devices: DEVICES.slice(0, 3) },
      stages: [{ percent: 100, soakSeconds: 0 }],
    });
    assert.equal((await call("POST", `/api/campaigns/${created.campaignId}/pause`)).json().status, "paused");
    assert.deepEqual(await poll(DEVICES), []);
    await call("POST", `/api/campaigns/${created.campaignId}/resume`);
    const offers = await poll(DEVICES);
    assert.equal(offers.length, 3);
    const [a] = offers.map((offer) => offer.deviceId) as [string];
    await report(a, created.campaignId, "downloading", { bytes: 100, total: artifact.size });
    const again = await until(async () => {
      const offered = await poll(DEVICES);
      return offered.length > 0 ? offered : undefined;
    }, "re-offer after the lease");
    assert.ok(
      again.some((offer) => offer.deviceId !== a),
      "silent devices are offered again",
    );
    const wrongSha = await report(a, created.campaignId, "confirmed", {}, "0".repeat(64));
    assert.deepEqual(wrongSha, { applied: 0, ignored: 1, rejected: [] });
    const stale = await app.inject({
      method: "POST",
      url: "/api/gateway/v1/artifact-reports",
      headers: bearer(acme.gatewayKey),
      payload: {
        reports: [
          {
            deviceId: a,
            receivedAt: 1,
            report: { v: 1, campaign: created.campaignId, sha256: artifact.sha256, status: "failed", code: "tampered" },
          },
          { deviceId: a, receivedAt: Date.now(), report: { v: 1, campaign: created.campaignId, status: "exploded" } },
        ],
      },
    });
    assert.equal(stale.json().applied, 0);
    assert.equal(stale.json().ignored, 1);
    assert.equal(stale.json().rejected[0].code, "invalid_status");
    const device = (await call("GET", `/api/campaigns/${created.campaignId}/devices`))
      .json()
      .items.find((d: { deviceId: string }) => d.deviceId === a);
    assert.equal(device.status, "downloading");
    assert.equal(device.bytes, 100);
    await cancel(created.campaignId);
  });

  test("a campaign allowing a downgrade carries a signed grant; tags and groups select devices", async () => {
    for (const deviceId of DEVICES.slice(0, 4)) {
      const labels = deviceId < "dev-03" ? { tags: ["Site-A"] } : { groups: ["lab"] };
      assert.equal((await call("PATCH", `/api/devices/${deviceId}`, labels)).statusCode, 200);
    }
    const created = await create({
      name: "back to 1.0",
      target: { tags: ["site-a"], groups: ["lab"] },
      stages: [{ percent: 100, soakSeconds: 0 }],
      allowDowngrade: true,
    });
    assert.equal(created.deviceCount, 4);
    const offers = await poll(DEVICES);
    assert.deepEqual(offers.map((o) => o.deviceId).sort(), DEVICES.slice(0, 4));
    const grant = (offers[0] as { offer: ArtifactOffer }).offer.downgrade;
    assert.ok(grant && verifyText(publicKey, grant.text, grant.sig));
    const parsed = parseDowngradeGrant(grant.text);
    assert.ok(parsed.ok);
    assert.equal(parsed.value.campaign, created.campaignId);
    assert.equal(parsed.value.sha256, artifact.sha256);
    await cancel(created.campaignId);
  });

  test("refusals: an unsigned artifact, unknown devices, stages that do not reach 100 %", async () => {
    const bytes = Buffer.from(
      buildEsp32Image({ chip: "esp32", version: "5.0.0", projectName: "k", seed: 8 }, nodeSha256),
    );
    const unsigned = (
      await app.inject({
        method: "POST",
        url: "/api/artifacts?kind=firmware&name=kestrel-fw&chip=esp32",
        headers: { ...bearer(token), "content-type": "application/octet-stream" },
        payload: bytes,
      })
    ).json();
    const refusals: Array<[object, number, string]> = [
      [{ artifactId: unsigned.artifactId, target: { devices: ["dev-01"] } }, 409, "artifact_unsigned"],
      [{ target: { devices: ["nope"] } }, 400, "unknown_devices"],
      [{ target: { tags: ["nobody"] } }, 400, "empty_target"],
      [{ target: { devices: ["dev-01"] }, stages: [{ percent: 50, soakSeconds: 0 }] }, 400, "invalid_stages"],
      [
        {
          target: { devices: ["dev-01"] },
          stages: [
            { percent: 50, soakSeconds: 0 },
            { percent: 20, soakSeconds: 0 },
          ],
        },
        400,
        "invalid_stages",
      ],
    ];
    for (const [body, status, code] of refusals) {
      const response = await call("POST", "/api/campaigns", { name: "x", artifactId: artifact.artifactId, ...body });
      assert.equal(response.statusCode, status, response.body);
      assert.equal(response.json().code, code);
    }
  });
});
