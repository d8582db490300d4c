// WebAssembly plugins on simulated devices: the real firmware in XS runs each plugin in wasm3 through
// the native binding (the same C as on the ESP32). Plugins arrive as signed artifacts (an offer, the
// module in chunks from the test peer). The example plugins give the outputs Node's own WebAssembly
// gives for the same .wasm and inputs; faulty, unsigned and tampered plugins are refused or stopped
// while the device keeps sampling and publishing; upgrades roll back; all of it persists.

import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { type CommandAck, PLUGIN_LIMITS, type PluginStatus, parseTelemetryBatch, topics } from "@kestrel/wire";
import { artifactTopics } from "@kestrel/wire/artifacts";
import { ReferencePlugin } from "../plugins/reference-host.ts";
import { withCustomSection } from "../plugins/wasm-sections.ts";
import { type SimDevice, startSimDevice } from "../sim/index.ts";
import { type Delivered, firstArrivals } from "./arrivals.ts";
import { ArtifactPeer, artifactOutcome, artifactReports, SigningKey, sha256Hex } from "./artifact-peer.ts";
import { startBroker, type TestBroker } from "./broker.ts";
import { captureLogs } from "./log-capture.ts";
import {
  deliver,
  EXAMPLE_METRICS,
  type PluginDelivery,
  pluginBytes,
  pluginOffer,
  pluginState,
  signingKey,
  TRUSTED,
} from "./plugin-fixtures.ts";
import { waitUntil } from "./wait.ts";

const DEVICES = ["plug-ref", "plug-faults", "plug-refused", "plug-life"];
const PEER = "plugin-peer";
const TOKENS = new Map([...DEVICES, PEER].map((id) => [id, `token-${id}`]));
/** A BME280: temperature, pressure and humidity, what the examples read. */
const SENSORS = "bme280@0x76";
const SENSOR_NAMES = ["temperature", "pressure", "humidity"];

let broker: TestBroker;
let peer: ArtifactPeer;
let stateDir: string;

before(async () => {
  broker = await startBroker(TOKENS);
  peer = await ArtifactPeer.start(broker.url, PEER, TOKENS.get(PEER) ?? "");
  stateDir = mkdtempSync(join(tmpdir(), "kestrel-plugins-"));
});

after(async () => {
  await peer.close();
  await broker.close();
  rmSync(stateDir, { recursive: true, force: true });
});

async function bootDevice(deviceId: string, t: { after(fn: () => Promise<void>): void }): Promise<SimDevice> {
  const { logger } = captureLogs();
  const device = await startSimDevice({
    deviceId,
    token: TOKENS.get(deviceId) ?? "",
    mqttUrl: broker.url,
    stateDir,
    sampleIntervalMs: 50,
    samplesPerBatch: 1,
    settings: { sensors: SENSORS, ...TRUSTED },
    logger,
  });
  t.after(() => device.stop());
  await device.connected;
  await broker.waitForSubscription(deviceId, artifactTopics.offer(deviceId));
  return device;
}

/** Offers the plugin and resolves with the device's final report of it. */
async function install(deviceId: string, delivery: PluginDelivery) {
  await deliver(peer, deviceId, delivery);
  return artifactOutcome(broker, deviceId, delivery.offer.campaign);
}

function samplesOf(deviceId: string): Delivered[] {
  return firstArrivals(
    broker.published
      .filter((message) => message.topic === topics.telemetry(deviceId))
      .flatMap((message) => {
        const batch = parseTelemetryBatch(message.payload);
        assert.ok(batch.ok, batch.ok ? "" : batch.error.message);
        return batch.value.samples.map((sample) => ({ ...sample, boot: batch.value.boot }));
      }),
  );
}

async function command(deviceId: string, id: string, name: string, params: Record<string, string | number>) {
  const acked = (): CommandAck | undefined =>
    broker.published
      .filter((message) => message.topic === topics.commandAck(deviceId))
      .map((message) => JSON.parse(message.payload) as CommandAck)
      .find((ack) => ack.id === id && ack.status !== "accepted");
  await broker.publish(topics.command(deviceId), JSON.stringify({ v: 1, id, name, params }));
  await waitUntil(() => acked() !== undefined, `the final ack of ${id}`);
  return acked() as CommandAck;
}

test("the example plugins give in the simulator (wasm3 in XS) what the same .wasm gives under Node's WebAssembly", async (t) => {
  const deviceId = "plug-ref";
  await bootDevice(deviceId, t);
  const configs = { smoothing: { window: 4 }, dewpoint: {}, threshold: { high: 22.5, hysteresis: 0.2 } };
  // Offered at once: the device works through them one after the other.
  const deliveries = Object.entries(configs).map(([name, config]) => pluginOffer(name, { config }));
  for (const delivery of deliveries) await deliver(peer, deviceId, delivery);
  for (const delivery of deliveries) {
    const report = await artifactOutcome(broker, deviceId, delivery.offer.campaign);
    assert.deepEqual({ status: report.status, running: report.running }, { status: "confirmed", running: "1.0.0" });
  }
  for (const name of Object.keys(configs))
    assert.equal((await pluginState(broker, deviceId, name, (s) => s.state === "enabled")).version, "1.0.0");
  const metric = (name: string): string => `${name}__${EXAMPLE_METRICS[name]?.[0]}`;
  await waitUntil(
    () => samplesOf(deviceId).filter((sample) => metric("threshold") in sample.m).length >= 40,
    "40 samples with every plugin's metric",
    30_000,
  );
  const samples = samplesOf(deviceId);
  for (const [name, config] of Object.entries(configs)) {
    const from = samples.findIndex((sample) => metric(name) in sample.m);
    const run = samples.slice(from);
    const reference = new ReferencePlugin(pluginBytes(name), {
      sensorNames: SENSOR_NAMES,
      metrics: EXAMPLE_METRICS[name] ?? [],
      config,
    });
    assert.equal(reference.init(), 0);
    let compared = 0;
    for (const sample of run) {
      const values = SENSOR_NAMES.map((sensor) => sample.m[sensor] ?? Number.NaN);
      const expected = reference.sample({ values, now: sample.ts })[0] as number;
      const got = sample.m[metric(name)];
      if (Number.isNaN(expected)) assert.equal(got, undefined, `${name} emitted nothing at seq ${sample.seq}`);
      else assert.equal(got, expected, `${name} at seq ${sample.seq}: wasm3 ${got}, V8 ${expected}`);
      compared++;
    }
    assert.ok(compared >= 40, `${name}: ${compared} samples compared`);
  }
});

test("a plugin that loops forever, reads out of bounds or recurses without end is stopped and disabled with the reason; the device keeps sampling", async (t) => {
  const deviceId = "plug-faults";
  const device = await bootDevice(deviceId, t);
  let since = broker.published.length;
  assert.equal((await install(deviceId, pluginOffer("spin"))).status, "confirmed", "it starts: init() is quick");
  const spin = await pluginState(broker, deviceId, "spin", (s) => s.state === "failed", since);
  assert.equal(spin.reason, "budget: [trap] execution budget exhausted");
  assert.equal(spin.errors, 1);
  assert.ok(spin.calls >= 1);

  since = broker.published.length;
  await install(deviceId, pluginOffer("out-of-bounds"));
  const outOfBounds = await pluginState(broker, deviceId, "outofbounds", (s) => s.state === "failed", since);
  assert.match(outOfBounds.reason ?? "", /^trap: \[trap\] out of bounds memory access/);

  // Recursing without end: stopped by the wasm3 value stack or the C stack guard, whichever is reached first.
  since = broker.published.length;
  await install(deviceId, pluginOffer("recursion"));
  const recursion = await pluginState(broker, deviceId, "recursion", (s) => s.state === "failed", since);
  assert.match(recursion.reason ?? "", /^trap: \[trap\] (stack overflow|native stack exhausted)/);

  // Sampling and publishing go on, and no stopped plugin ever ran again nor made the device reset.
  const count = samplesOf(deviceId).length;
  await waitUntil(() => samplesOf(deviceId).length >= count + 10, "ten more samples");
  const later = samplesOf(deviceId).slice(count);
  assert.ok(later.every((sample) => !("outofbounds__leak" in sample.m)));
  assert.equal(device.restarts, 0, "no watchdog reset, software or hardware");
  // New config for the stopped plugin makes the device report its state again, without restarting it.
  since = broker.published.length;
  const ack = await command(deviceId, "cfg-spin", "plugin-config", { name: "spin", rate: 2 });
  assert.equal(ack.status, "done");
  const again = await pluginState(broker, deviceId, "spin", () => true, since);
  assert.equal(again.state, "failed");
  assert.equal(again.calls, spin.calls, "a stopped plugin is not called again");
});

/** The same code grown past `size` bytes by a custom section. */
function padded(bytes: Uint8Array, size: number): Buffer {
  return withCustomSection(bytes, "padding", size - bytes.byteLength);
}

test("an unknown import, bytes that are not WebAssembly, an oversized module, an unsigned offer, an unknown key and a tampered signature, manifest or module are refused before anything is stored", async (t) => {
  const deviceId = "plug-refused";
  const device = await bootDevice(deviceId, t);
  const refusal = async (delivery: PluginDelivery): Promise<string> => {
    const report = await install(deviceId, delivery);
    assert.equal(report.status, "failed", JSON.stringify(report));
    return `${report.code}: ${report.reason}`;
  };

  // Without a signature the offer is not even one: ignored, and nothing reported or installed (checked below).
  const unsigned = pluginOffer("smoothing", { name: "unsigned" });
  await peer.client.publishAsync(
    artifactTopics.offer(deviceId),
    JSON.stringify({ ...unsigned.offer, manifest: { text: unsigned.offer.manifest.text, sig: "" } }),
    { qos: 1 },
  );

  assert.equal(
    await refusal(pluginOffer("unknown-import", { name: "rogue" })),
    "invalid_module: refused: unknown import env.system",
  );
  assert.equal(
    (await pluginState(broker, deviceId, "rogue", (s) => s.state === "failed")).reason,
    "refused: unknown import env.system",
    "the device's state says it too",
  );
  const garbage = pluginOffer("smoothing", { name: "garbage", bytes: Buffer.from("not wasm at all") });
  assert.equal(await refusal(garbage), "invalid_module: refused: not a WebAssembly 1.0 module");

  const big = pluginOffer("smoothing", { name: "big", bytes: padded(pluginBytes("smoothing"), 20_000) });
  assert.match(await refusal(big), new RegExp(`^bad_signature: .*at most ${PLUGIN_LIMITS.moduleBytes} bytes`));

  const stranger = pluginOffer("smoothing", { name: "stranger", key: new SigningKey() });
  assert.match(await refusal(stranger), /^unknown_key: key [0-9a-f]{16} is not trusted/);

  const forged = pluginOffer("smoothing", { name: "forged" });
  forged.offer.manifest.sig = pluginOffer("dewpoint", { name: "forged" }).offer.manifest.sig;
  assert.match(await refusal(forged), /^bad_signature: the manifest's signature does not verify/);

  const edited = pluginOffer("smoothing", { name: "edited" });
  edited.offer.manifest.text = edited.offer.manifest.text.replace('"version":"1.0.0"', '"version":"9.9.9"');
  assert.match(await refusal(edited), /^bad_signature: the manifest's signature does not verify/);

  // The gateway serves other bytes than the signed ones: the SHA-256 of the download gives it away.
  const swapped = pluginOffer("smoothing", { name: "swapped" });
  const module = Buffer.from(swapped.bytes);
  module.writeUInt8((module.at(-1) as number) ^ 0xff, module.length - 1);
  assert.match(
    await refusal({ ...swapped, bytes: module, servedAs: sha256Hex(swapped.bytes) }),
    /^tampered: the artifact hashes to /,
  );

  // Nothing was installed: every plugin the device reports is a refusal (version "0").
  const last = broker.published.filter((message) => message.topic === topics.state(deviceId)).at(-1);
  const reported = (JSON.parse(last?.payload ?? "{}") as { plugins?: PluginStatus[] }).plugins ?? [];
  assert.deepEqual(
    reported.map((plugin) => [plugin.name, plugin.version, plugin.state]),
    [
      ["rogue", "0", "failed"],
      ["garbage", "0", "failed"],
    ],
  );
  assert.deepEqual(artifactReports(broker, deviceId, unsigned.offer.campaign), [], "the unsigned offer got no answer");
  const count = samplesOf(deviceId).length;
  await waitUntil(() => samplesOf(deviceId).length >= count + 5, "five more samples");
  assert.ok(samplesOf(deviceId).every((sample) => Object.keys(sample.m).every((metric) => !metric.includes("__"))));
  assert.equal(device.restarts, 0);
});

test("lifecycle: install, disable, enable, an upgrade that traps at start rolled back, an upgrade kept across a reboot, remove", async (t) => {
  const deviceId = "plug-life";
  const device = await bootDevice(deviceId, t);
  const metric = "smoothing__temperature_avg";
  const samplesAfter = async (count: number, what: string): Promise<Delivered[]> => {
    const from = samplesOf(deviceId).length;
    await waitUntil(() => samplesOf(deviceId).length >= from + count, what);
    return samplesOf(deviceId).slice(from + 1);
  };

  let since = broker.published.length;
  assert.equal((await install(deviceId, pluginOffer("smoothing", { config: { window: 2 } }))).status, "confirmed");
  await pluginState(broker, deviceId, "smoothing", (s) => s.state === "enabled" && s.version === "1.0.0", since);
  assert.ok((await samplesAfter(4, "samples with the plugin")).every((sample) => metric in sample.m));

  const disabled = await command(deviceId, "off-1", "plugin-disable", { name: "smoothing" });
  assert.deepEqual(disabled.result, { name: "smoothing", version: "1.0.0", state: "disabled" });
  assert.ok((await samplesAfter(4, "samples while disabled")).every((sample) => !(metric in sample.m)));
  const enabled = await command(deviceId, "on-1", "plugin-enable", { name: "smoothing" });
  assert.equal(enabled.result?.state, "enabled");
  assert.ok((await samplesAfter(4, "samples once enabled again")).every((sample) => metric in sample.m));

  since = broker.published.length;
  const trapping = await install(deviceId, pluginOffer("init-trap", { name: "smoothing", version: "2.0.0" }));
  assert.deepEqual(
    { status: trapping.status, code: trapping.code, running: trapping.running },
    { status: "rolled-back", code: "start_failed", running: "1.0.0" },
  );
  assert.match(trapping.reason ?? "", /^upgrade to 2\.0\.0 failed, kept 1\.0\.0: /);
  const rolledBack = await pluginState(broker, deviceId, "smoothing", (s) => s.reason !== undefined, since);
  assert.equal(rolledBack.version, "1.0.0");
  assert.equal(rolledBack.state, "enabled");
  assert.match(rolledBack.reason ?? "", /^upgrade to 2\.0\.0 failed, kept 1\.0\.0: /);
  assert.ok((await samplesAfter(4, "samples after the failed upgrade")).every((sample) => metric in sample.m));

  since = broker.published.length;
  await install(deviceId, pluginOffer("smoothing", { version: "1.1.0", config: { window: 8 } }));
  const upgraded = await pluginState(broker, deviceId, "smoothing", (s) => s.version === "1.1.0", since);
  assert.deepEqual(
    { state: upgraded.state, previous: upgraded.previous, reason: upgraded.reason },
    { state: "enabled", previous: "1.0.0", reason: undefined },
  );

  // Back to 1.0.0: refused without the campaign's signed grant, installed with it.
  const older = pluginOffer("smoothing", { version: "1.0.0" });
  const refusedDowngrade = await install(deviceId, older);
  assert.deepEqual(
    { status: refusedDowngrade.status, code: refusedDowngrade.code, running: refusedDowngrade.running },
    { status: "failed", code: "downgrade", running: "1.1.0" },
  );
  const granted = pluginOffer("smoothing", { version: "1.1.0" });
  granted.offer.campaign = "cmp-plugin-back";
  granted.offer.manifest = older.offer.manifest;
  granted.offer.downgrade = signingKey.downgradeGrant("cmp-plugin-back", sha256Hex(older.bytes));
  assert.deepEqual(
    { ...(await install(deviceId, { ...granted, bytes: older.bytes })) },
    { v: 1, campaign: "cmp-plugin-back", sha256: sha256Hex(older.bytes), status: "confirmed", running: "1.0.0" },
  );
  // The same version offered again: nothing downloaded, its settings (here: disabled) applied.
  since = broker.published.length;
  const settled = pluginOffer("smoothing", { version: "1.0.0", enabled: false });
  assert.equal((await install(deviceId, settled)).status, "confirmed");
  await pluginState(broker, deviceId, "smoothing", (s) => s.state === "disabled", since);
  assert.equal((await command(deviceId, "on-2", "plugin-enable", { name: "smoothing" })).status, "done");

  await command(deviceId, "reboot-1", "reboot", {});
  await waitUntil(() => device.restarts === 1, "the restart");
  const rebooted = await broker.waitFor(
    (message) => message.topic === topics.state(deviceId) && message.payload.includes('"boot":2'),
    15_000,
  );
  const afterReboot = (JSON.parse(rebooted.payload) as { plugins: PluginStatus[] }).plugins;
  assert.deepEqual(
    afterReboot.map((plugin) => [plugin.name, plugin.version, plugin.state, plugin.previous]),
    [["smoothing", "1.0.0", "enabled", "1.1.0"]],
  );
  const bootTwo = await samplesAfter(4, "samples after the reboot");
  assert.ok(
    bootTwo.every((sample) => sample.boot === 2 && metric in sample.m),
    "the plugin runs again after a reboot",
  );

  const removed = await command(deviceId, "rm-1", "plugin-remove", { name: "smoothing" });
  assert.equal(removed.status, "done");
  assert.ok((await samplesAfter(4, "samples after the removal")).every((sample) => !(metric in sample.m)));
  const missing = await command(deviceId, "on-3", "plugin-enable", { name: "smoothing" });
  assert.deepEqual(
    { status: missing.status, reason: missing.reason },
    { status: "failed", reason: "no plugin named smoothing" },
  );
});
