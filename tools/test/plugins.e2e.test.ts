// End to end, a WebAssembly plugin from the registry to a group of five simulated ESP32s running the
// real firmware in XS (wasm3 through the native binding), through the real gateway and cloud: the
// dew-point example, built from AssemblyScript by the repo's build, is uploaded, signed and assigned
// to the group with its config; every device installs and runs it, one of them only once it comes
// back online, and its metric is in the telemetry history, equal to what Node's WebAssembly computes
// from the same sample. A config change reaches the devices as a command; v2 replaces it; a v3 that
// traps at start rolls back on every device to v2, which the cloud shows with the device's reason.
// A module outside the host's contract is refused by the registry, an unsigned version is never
// delivered, and a device that does not trust the signing key refuses the plugin and says why.

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { type SimDevice, startSimDevice } from "@kestrel/firmware/sim";
import type { PluginStatus } from "@kestrel/wire";
import { ReferencePlugin } from "../../firmware/plugins/reference-host.ts";
import { withCustomSection } from "../../firmware/plugins/wasm-sections.ts";
import { OtaOperator } from "../../gateway/test/ota-fixture.ts";
import { CloudApi, cloudBehindGateway, silent, tempDir, until } from "./helpers.ts";

const GROUP = ["gh-1", "gh-2", "gh-3", "gh-4", "gh-5"];
/** Offline when the plugin is assigned: it gets it when it connects. */
const LATE = "gh-5";
/** Provisioned with another organization's key. */
const STRANGER = "stranger";
const PLUGINS = join(import.meta.dirname, "..", "..", "firmware", "build", "plugins");
const SENSOR_NAMES = ["temperature", "pressure", "humidity"];
const METRIC = "dewpoint__dew_point";

function built(name: string): Buffer {
  return readFileSync(join(PLUGINS, `${name}.wasm`));
}

interface DeviceEntry {
  deviceId: string;
  delivery: { status: string; code: string | null; reason: string | null; running: string | null };
  installed: PluginStatus | null;
}

interface PluginView {
  telemetryMetrics: string[];
  assignments: Array<{
    assignmentId: string;
    version: string;
    previousVersion: string | null;
    rollout: { status: string; haltReason: string | null };
  }>;
  devices: DeviceEntry[];
  totals: Record<string, number>;
}

describe("a plugin delivered from the cloud to a group of five devices", () => {
  let system: Awaited<ReturnType<typeof cloudBehindGateway>>;
  let operator: OtaOperator;
  let api: CloudApi;
  let stateDir: string;
  let provisioned: string;
  const devices = new Map<string, SimDevice>();
  let assignmentId: string;
  const startedAt = Date.now();

  async function boot(deviceId: string, keys = provisioned): Promise<void> {
    const token = system.cloud.credentials.devices.find((device) => device.deviceId === deviceId)?.token ?? "";
    const device = await startSimDevice({
      deviceId,
      token,
      mqttUrl: `mqtt://127.0.0.1:${system.gateway.mqttPort}`,
      stateDir,
      logger: silent,
      sampleIntervalMs: 250,
      samplesPerBatch: 4,
      settings: { sensors: "bme280@0x76", otaKeys: keys },
    });
    devices.set(deviceId, device);
    await device.connected;
  }

  const view = () => operator.request<PluginView>("GET", "/api/plugins/dewpoint");
  const groupEntries = (plugin: PluginView) => plugin.devices.filter((device) => GROUP.includes(device.deviceId));

  /** Until every device of the group satisfies `done`; the last view. */
  function everyDevice(done: (device: DeviceEntry) => boolean, what: string): Promise<PluginView> {
    return until(
      async () => {
        const plugin = await view();
        const group = groupEntries(plugin);
        return group.length === GROUP.length && group.every(done) ? plugin : undefined;
      },
      what,
      60_000,
    );
  }

  before(async () => {
    system = await cloudBehindGateway("plugins-e2e", [...GROUP, STRANGER], {
      cloud: { OTA_TICK_MS: "200", OTA_OFFER_LEASE_MS: "10000" },
    });
    operator = await OtaOperator.signIn(system.cloud.url, system.cloud.credentials.admin);
    api = new CloudApi(system.cloud.url);
    await api.login(system.cloud.credentials.admin.email, system.cloud.credentials.admin.password);
    const { key } = await operator.createSigningKey();
    provisioned = `${key.keyId}:${key.publicKey}`;
    for (const deviceId of GROUP)
      await operator.request("PATCH", `/api/devices/${deviceId}`, { groups: ["greenhouse"] });
    stateDir = await tempDir("plugins-e2e-devices");
    await Promise.all(GROUP.filter((deviceId) => deviceId !== LATE).map((deviceId) => boot(deviceId)));
  });

  after(async () => {
    await Promise.all([...devices.values()].map((device) => device.stop()));
    await system?.stop();
    silent.info({ seconds: (Date.now() - startedAt) / 1000 }, "plugin end-to-end test done");
  });

  test("a module outside the host's contract is refused at upload, and nothing is stored", async () => {
    await assert.rejects(
      operator.uploadPlugin(built("unknown-import"), { name: "rogue", version: "1.0.0", metrics: [] }),
      /answered 422: .*forbidden_import: imports env\.system, which the host API does not offer/,
    );
    const stored = await operator.request<{ items: unknown[] }>("GET", "/api/artifacts?kind=plugin");
    assert.deepEqual(stored.items, []);
  });

  test("assigned with its config, it runs on every device of the group, one that was offline included", async () => {
    await operator.uploadPlugin(built("dewpoint"), { name: "dewpoint", version: "1.0.0", metrics: ["dew_point"] });
    const assignment = await operator.request<{ assignmentId: string; campaignId: string }>(
      "POST",
      "/api/plugins/dewpoint/assignments",
      { version: "1.0.0", target: { groups: ["greenhouse"] }, config: { fahrenheit: 0 } },
    );
    assignmentId = assignment.assignmentId;
    await until(
      async () => {
        const online = groupEntries(await view()).filter((device) => device.deviceId !== LATE);
        return online.every((device) => device.installed?.state === "enabled") ? true : undefined;
      },
      "the plugin running on the four devices online",
      60_000,
    );
    await boot(LATE);
    const plugin = await everyDevice(
      (device) =>
        device.delivery.status === "confirmed" &&
        device.installed?.version === "1.0.0" &&
        device.installed.state === "enabled",
      "the plugin running on all five",
    );
    assert.deepEqual(plugin.telemetryMetrics, [METRIC]);
    assert.equal(plugin.totals.running, 5);

    // Its metric is in the history, as Node's WebAssembly computes it from the same sample.
    const reference = new ReferencePlugin(new Uint8Array(built("dewpoint")), {
      sensorNames: SENSOR_NAMES,
      metrics: ["dew_point"],
      config: { fahrenheit: 0 },
    });
    assert.equal(reference.init(), 0);
    for (const deviceId of [GROUP[0] as string, LATE]) {
      const samples = await until(async () => {
        const raw = await api.rawHistory(deviceId, startedAt, Date.now() + 60_000);
        const withMetric = raw.filter((sample) => METRIC in sample.m);
        return withMetric.length >= 3 ? withMetric : undefined;
      }, `dew points of ${deviceId} in the history`);
      for (const sample of samples) {
        const values = SENSOR_NAMES.map((name) => sample.m[name] ?? Number.NaN);
        assert.equal(
          sample.m[METRIC],
          reference.sample({ values, now: sample.ts })[0],
          `${deviceId} seq ${sample.seq}`,
        );
      }
    }
  });

  test("a config change reaches the devices that run it", async () => {
    const changed = await operator.request<{ config: Record<string, number> }>(
      "PATCH",
      `/api/plugins/dewpoint/assignments/${assignmentId}`,
      { config: { fahrenheit: 1 } },
    );
    assert.deepEqual(changed.config, { fahrenheit: 1 });
    const since = Date.now();
    const fahrenheit = new ReferencePlugin(new Uint8Array(built("dewpoint")), {
      sensorNames: SENSOR_NAMES,
      metrics: ["dew_point"],
      config: { fahrenheit: 1 },
    });
    assert.equal(fahrenheit.init(), 0);
    const sample = await until(async () => {
      const raw = await api.rawHistory(GROUP[1] as string, since, Date.now() + 60_000);
      return raw.find((candidate) => {
        const values = SENSOR_NAMES.map((name) => candidate.m[name] ?? Number.NaN);
        return candidate.m[METRIC] === fahrenheit.sample({ values, now: candidate.ts })[0];
      });
    }, "a dew point in °F");
    assert.ok(sample.m[METRIC] !== undefined);
  });

  test("v2 replaces v1 everywhere, and the cloud shows it", async () => {
    await operator.uploadPlugin(withCustomSection(built("dewpoint"), "v2"), {
      name: "dewpoint",
      version: "2.0.0",
      metrics: ["dew_point"],
    });
    await operator.request("POST", `/api/plugins/dewpoint/assignments/${assignmentId}/upgrade`, { version: "2.0.0" });
    const plugin = await everyDevice(
      (device) =>
        device.installed?.version === "2.0.0" &&
        device.installed.state === "enabled" &&
        device.installed.previous === "1.0.0",
      "2.0.0 running on all five",
    );
    assert.deepEqual(
      { version: plugin.assignments[0]?.version, previous: plugin.assignments[0]?.previousVersion },
      { version: "2.0.0", previous: "1.0.0" },
    );
  });

  test("a v3 that traps at start rolls back to v2 on every device, with the reason in the cloud", async () => {
    await operator.uploadPlugin(built("init-trap"), { name: "dewpoint", version: "3.0.0", metrics: ["dew_point"] });
    await operator.request("POST", `/api/plugins/dewpoint/assignments/${assignmentId}/upgrade`, { version: "3.0.0" });
    const plugin = await until(async () => {
      const current = await view();
      const rolledBack = groupEntries(current).filter((device) => device.delivery.status === "rolled-back");
      return current.assignments[0]?.rollout.status === "halted" && rolledBack.length > 0 ? current : undefined;
    }, "the rollout of 3.0.0 halted by its rollbacks");
    assert.match(plugin.assignments[0]?.rollout.haltReason ?? "", /roll/);
    for (const device of groupEntries(plugin).filter((entry) => entry.delivery.status === "rolled-back")) {
      assert.equal(device.delivery.code, "start_failed");
      assert.equal(device.delivery.running, "2.0.0");
      assert.match(device.delivery.reason ?? "", /^upgrade to 3\.0\.0 failed, kept 2\.0\.0: /);
    }
    assert.ok((plugin.totals.failed ?? 0) >= 1);
    // Whatever was offered, every device still runs 2.0.0.
    for (const device of groupEntries(plugin)) {
      assert.equal(device.installed?.version, "2.0.0", device.deviceId);
      assert.equal(device.installed?.state, "enabled", device.deviceId);
    }
    // The operator rolls the assignment back: 2.0.0 again, which the devices run already.
    const back = await operator.request<{ version: string; previousVersion: string }>(
      "POST",
      `/api/plugins/dewpoint/assignments/${assignmentId}/rollback`,
    );
    assert.deepEqual(
      { version: back.version, previous: back.previousVersion },
      { version: "2.0.0", previous: "3.0.0" },
    );
    await everyDevice(
      (device) => device.delivery.status === "confirmed" && device.installed?.version === "2.0.0",
      "2.0.0 confirmed by all five again",
    );
  });

  test("an unsigned version is never delivered; a device that does not trust the key refuses the plugin", async () => {
    await operator.uploadPlugin(
      withCustomSection(built("dewpoint"), "v4"),
      { name: "dewpoint", version: "4.0.0", metrics: ["dew_point"] },
      false,
    );
    await assert.rejects(
      operator.request("POST", `/api/plugins/dewpoint/assignments/${assignmentId}/upgrade`, { version: "4.0.0" }),
      /answered 409: .*artifact_unsigned/,
    );
    const otherOrganization = (await import("node:crypto")).generateKeyPairSync("ec", { namedCurve: "prime256v1" });
    const jwk = otherOrganization.publicKey.export({ format: "jwk" });
    const point = `04${Buffer.from(jwk.x as string, "base64url").toString("hex")}${Buffer.from(jwk.y as string, "base64url").toString("hex")}`;
    await boot(STRANGER, `0123456789abcdef:${point}`);
    await operator.request("POST", "/api/plugins/dewpoint/assignments", {
      version: "2.0.0",
      target: { devices: [STRANGER] },
    });
    const refused = await until(async () => {
      const entry = (await view()).devices.find((device) => device.deviceId === STRANGER);
      return entry?.delivery.status === "failed" ? entry : undefined;
    }, "the stranger's refusal");
    assert.equal(refused.delivery.code, "unknown_key");
    assert.equal(refused.installed, null);
  });
});
