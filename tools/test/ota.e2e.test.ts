// End to end, the whole pipeline with 20 simulated ESP32s running the real firmware in XS: an
// operator signs a firmware image and rolls it out in four stages (1 %, 10 %, 50 %, 100 %); the
// cloud offers each stage only after the previous one confirmed and soaked, the gateway fetches the
// image from the cloud once and serves every device from its cache, each device verifies, installs,
// reboots into the new image and confirms it. Then a build that crashes at boot: its first stage
// rolls back by itself and the campaign halts there, the rest of the fleet untouched.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { SIM_IMAGE_MARKERS, type SimDevice, startSimDevice } from "@kestrel/firmware/sim";
import { firmwareImage, OtaOperator, type UploadedArtifact } from "../../gateway/test/ota-fixture.ts";
import { cloudBehindGateway, silent, tempDir, until } from "./helpers.ts";

const FLEET = Array.from({ length: 20 }, (_, i) => `fleet-${String(i + 1).padStart(2, "0")}`);
const STAGES = [1, 10, 50, 100].map((percent) => ({ percent, soakSeconds: 2 }));

interface HistoryItem {
  at: number;
  deviceId?: string;
  from: string | null;
  to: string;
  code?: string;
}

describe("OTA end to end with a fleet of 20", () => {
  let system: Awaited<ReturnType<typeof cloudBehindGateway>>;
  let operator: OtaOperator;
  const devices: SimDevice[] = [];
  let release: UploadedArtifact;
  const startedAt = Date.now();

  before(async () => {
    system = await cloudBehindGateway("ota-e2e", FLEET, {
      cloud: { OTA_TICK_MS: "200", OTA_OFFER_LEASE_MS: "10000" },
    });
    operator = await OtaOperator.signIn(system.cloud.url, system.cloud.credentials.admin);
    const { key } = await operator.createSigningKey();
    const stateDir = await tempDir("ota-e2e-devices");
    for (const { deviceId, token } of system.cloud.credentials.devices) {
      const device = await startSimDevice({
        deviceId,
        token,
        mqttUrl: `mqtt://127.0.0.1:${system.gateway.mqttPort}`,
        stateDir,
        logger: silent,
        sampleIntervalMs: 500,
        samplesPerBatch: 20,
        appPartitionBytes: 128 * 1024,
        settings: { otaKeys: `${key.keyId}:${key.publicKey}`, otaHealthWindowMs: 2000 },
      });
      devices.push(device);
    }
    await Promise.all(devices.map((device) => device.connected));
  });

  after(async () => {
    await Promise.all(devices.map((device) => device.stop()));
    await system?.stop();
  });

  const history = async (campaignId: string) =>
    (await operator.request<{ items: HistoryItem[] }>("GET", `/api/campaigns/${campaignId}/history`)).items;

  test("a staged rollout reaches all 20 devices, stage by stage, each confirmed", async () => {
    release = await operator.uploadSigned(firmwareImage({ version: "1.1.0", size: 32 * 1024, seed: 21 }));
    const { campaignId } = await operator.startCampaign({
      artifactId: release.artifactId,
      target: { devices: FLEET },
      stages: STAGES,
      startWindowSeconds: 2,
    });
    const done = await until(
      async () => {
        const state = await operator.campaign(campaignId);
        assert.notEqual(state.status, "halted", `halted: ${state.haltReason}`);
        return state.status === "completed" ? state : undefined;
      },
      "the rollout to complete",
      240_000,
    );
    assert.equal(done.counts.confirmed, 20, JSON.stringify(done.counts));
    assert.deepEqual(
      done.stages.map((stage) => stage.devices),
      [1, 1, 8, 10],
    );
    for (const device of devices) assert.equal(device.image.version, "1.1.0", device.deviceId);

    // Stage by stage: no device of a stage was offered before its stage started, and no stage
    // started before every device of the previous one confirmed and the soak passed.
    const items = await history(campaignId);
    const stageStarts = items.filter((item) => item.to === "stage-started").map((item) => item.at);
    assert.equal(stageStarts.length, 4);
    const stageOf = new Map(
      (await operator.devices(campaignId)).items.map((device) => [device.deviceId, device.stage] as const),
    );
    const confirmedAt = new Map(items.filter((i) => i.to === "confirmed").map((i) => [i.deviceId as string, i.at]));
    for (const item of items.filter((i) => i.to === "notified")) {
      const stage = stageOf.get(item.deviceId as string) as number;
      assert.ok(item.at >= (stageStarts[stage] as number), `${item.deviceId} offered before stage ${stage + 1}`);
    }
    for (let stage = 1; stage < 4; stage++) {
      const previous = [...stageOf].filter(([, s]) => s === stage - 1).map(([id]) => confirmedAt.get(id) as number);
      assert.ok(
        (stageStarts[stage] as number) >= Math.max(...previous) + 2000,
        `stage ${stage + 1} started after stage ${stage} confirmed and soaked`,
      );
    }
    const reported = await until(
      async () => {
        const states = await operator.request<{ items: Array<{ fw: string | null }> }>("GET", "/api/devices?limit=100");
        return states.items.every((device) => device.fw === "1.1.0") ? states.items : undefined;
      },
      "every device reporting 1.1.0 in its state",
      30_000,
    );
    assert.equal(reported.length, 20);
    // One fetch from the cloud, 20 devices served from the gateway's cache.
    const { metrics } = system.gateway;
    assert.equal(await metrics.value("kestrel_gateway_artifact_upstream_bytes_total"), release.size);
    assert.ok((await metrics.value("kestrel_gateway_artifact_bytes_served_total")) >= 20 * release.size);
    silent.info({ seconds: (Date.now() - startedAt) / 1000 }, "staged rollout to 20 devices done");
  });

  test("a build that crashes at boot rolls back by itself and halts the campaign at its first stage", async () => {
    const crashing = await operator.uploadSigned(
      firmwareImage({ version: "1.2.0", size: 32 * 1024, seed: 22, projectName: SIM_IMAGE_MARKERS.crashAtBoot }),
    );
    const { campaignId } = await operator.startCampaign({
      artifactId: crashing.artifactId,
      target: { devices: FLEET },
      stages: STAGES,
      startWindowSeconds: 1,
      thresholds: { rollbackRate: 0.2 },
    });
    const halted = await until(
      async () => {
        const state = await operator.campaign(campaignId);
        return state.status === "halted" ? state : undefined;
      },
      "the campaign to halt",
      120_000,
    );
    assert.match(halted.haltReason ?? "", /stage 1: 1 of 1 devices rolled back/);
    assert.equal(halted.stage, 0, "no later stage started");
    const [rolledBack] = (await operator.devices(campaignId)).items.filter((device) => device.status === "rolled-back");
    assert.ok(rolledBack);
    assert.equal(rolledBack.code, "boot_failed");
    assert.equal(rolledBack.running, "1.1.0");
    const crashed = devices.find((device) => device.deviceId === rolledBack.deviceId) as SimDevice;
    assert.deepEqual(
      crashed.boots.slice(-2).map((boot) => boot.version),
      ["1.2.0", "1.1.0"],
      "booted the new image, crashed, and the bootloader brought the old one back",
    );
    assert.equal(crashed.image.version, "1.1.0");
    const others = (await operator.devices(campaignId)).items.filter(
      (device) => device.deviceId !== rolledBack.deviceId,
    );
    assert.ok(
      others.every((device) => device.status === "pending"),
      "nobody else was offered the build",
    );
    assert.ok(devices.every((device) => device.image.version === "1.1.0"));
    const items = await history(campaignId);
    assert.ok(items.some((item) => item.to === "halted" && item.from === "running"));
  });
});
