// Signed updates on the device, the firmware running in XS against the simulated chip's two app
// partitions and bootloader: an offer is verified, downloaded, checked, installed and confirmed
// after a health check; a tampered, badly signed, foreign-key, wrong-target or truncated artifact is
// refused with its reason while the old image keeps running; a download cut by the link or by a
// power loss mid-write resumes and completes; an image that crashes at boot or fails its health
// check rolls back by itself; a rotated key is trusted only after its record, the retired one never
// again.

import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { type ArtifactStatusReport, parseArtifactStatusReport } from "@kestrel/wire/artifacts";
import { SIM_IMAGE_MARKERS, type SimDevice, startSimDevice } from "../sim/device.ts";
import { ArtifactPeer, image, offer, SigningKey, sha256Hex } from "./artifact-peer.ts";
import { startBroker, type TestBroker } from "./broker.ts";
import { waitUntil } from "./wait.ts";

const DEVICES = Array.from({ length: 16 }, (_, i) => `ota-${i}`);
const PEER = "artifact-peer";
const TOKENS = new Map([...DEVICES, PEER].map((id) => [id, `token-${id}`]));
/** Room for the test images, small enough to keep the partition files cheap. */
const PARTITION = 512 * 1024;

let broker: TestBroker;
let peer: ArtifactPeer;
let stateDir: string;
const key = new SigningKey();
let nextDevice = 0;

before(async () => {
  broker = await startBroker(TOKENS);
  peer = await ArtifactPeer.start(broker.url, PEER, TOKENS.get(PEER) ?? "");
  stateDir = mkdtempSync(join(tmpdir(), "kestrel-ota-"));
});

after(async () => {
  await peer.close();
  await broker.close();
  rmSync(stateDir, { recursive: true, force: true });
});

function reports(deviceId: string, campaign?: string): ArtifactStatusReport[] {
  return broker.published
    .filter((message) => message.topic === `d/${deviceId}/artifact/status`)
    .map((message) => {
      const parsed = parseArtifactStatusReport(message.payload);
      assert.ok(parsed.ok, parsed.ok ? "" : parsed.error.message);
      return parsed.value;
    })
    .filter((report) => campaign === undefined || report.campaign === campaign);
}

async function outcome(deviceId: string, campaign: string, timeoutMs = 30_000): Promise<ArtifactStatusReport> {
  const final = new Set(["confirmed", "failed", "rolled-back"]);
  await waitUntil(
    () => reports(deviceId, campaign).some((r) => final.has(r.status)),
    `${deviceId} outcome of ${campaign}`,
    timeoutMs,
  );
  return reports(deviceId, campaign).find((r) => final.has(r.status)) as ArtifactStatusReport;
}

async function device(
  t: { after(fn: () => Promise<void>): void },
  settings: Record<string, string | number> = {},
): Promise<SimDevice> {
  const deviceId = DEVICES[nextDevice++] as string;
  const started = await startSimDevice({
    deviceId,
    token: TOKENS.get(deviceId) ?? "",
    mqttUrl: broker.url,
    stateDir,
    sampleIntervalMs: 200,
    samplesPerBatch: 5,
    appPartitionBytes: PARTITION,
    settings: { otaKeys: key.provisioned, otaHealthWindowMs: 1500, ...settings },
  });
  t.after(() => started.stop());
  await started.connected;
  await broker.waitForSubscription(deviceId, `d/${deviceId}/artifact/chunk`);
  return started;
}

describe("signed update on the device", () => {
  test("offered, downloaded, verified, installed, rebooted and confirmed after the health check", async (t) => {
    const sim = await device(t);
    assert.equal(sim.image.version, "0.1.0");
    const bytes = image({ version: "1.0.0", seed: 2 });
    peer.serve(bytes);
    await peer.publishOffer(sim.deviceId, offer("cmp-good", key.manifest(bytes)));
    const final = await outcome(sim.deviceId, "cmp-good");
    assert.equal(final.status, "confirmed", JSON.stringify(final));
    assert.equal(final.running, "1.0.0", "reported by the new image");
    const statuses: string[] = reports(sim.deviceId, "cmp-good").map((r) => r.status);
    const order = ["notified", "downloading", "verifying", "installed", "rebooting", "confirmed"];
    assert.deepEqual(
      order.map((status) => statuses.indexOf(status) >= 0),
      order.map(() => true),
      statuses.join(" "),
    );
    for (let i = 0; i + 1 < order.length; i++)
      assert.ok(
        statuses.indexOf(order[i] as string) < statuses.lastIndexOf(order[i + 1] as string),
        statuses.join(" "),
      );
    assert.deepEqual(
      sim.boots.map((boot) => [boot.version, boot.state]),
      [
        ["0.1.0", "undefined"],
        ["1.0.0", "pending-verify"],
      ],
    );
    await waitUntil(() => sim.image.version === "1.0.0", "running 1.0.0");
    const state = await broker.waitFor(
      (message) => message.topic === `d/${sim.deviceId}/state` && message.payload.includes('"fw":"1.0.0"'),
    );
    assert.match(state.payload, /"reset":"ota"/, "the new image says why it booted");
  });

  test("refused on the device with the reason, the old image still running: tampered, bad signature, unknown key, wrong target, truncated, downgrade, too large", async (t) => {
    const sim = await device(t);
    const good = image({ version: "2.0.0", seed: 3 });
    const tampered = Buffer.from(good);
    tampered[40_000] = (tampered[40_000] as number) ^ 0x01;
    const stranger = new SigningKey();
    const badSig = key.manifest(good);
    badSig.sig = `${badSig.sig.slice(0, 10)}${badSig.sig[10] === "0" ? "1" : "0"}${badSig.sig.slice(11)}`;
    const s3Image = image({ version: "2.0.0", chip: "esp32s3", seed: 4 });
    const older = image({ version: "0.0.9", seed: 5 });
    const big = image({ version: "2.0.0", size: PARTITION + 4096, seed: 13 });
    peer.serve(tampered, sha256Hex(good));
    peer.serve(s3Image);
    peer.serve(good.subarray(0, 30_000), "f".repeat(64));
    peer.serve(older);
    const cases: Array<[string, ReturnType<typeof offer>, string]> = [
      ["cmp-tampered", offer("cmp-tampered", key.manifest(good)), "tampered"],
      ["cmp-badsig", offer("cmp-badsig", badSig), "bad_signature"],
      ["cmp-stranger", offer("cmp-stranger", stranger.manifest(good)), "unknown_key"],
      [
        "cmp-target",
        offer("cmp-target", key.manifest(good, { target: { chip: "esp32s3", board: "*" } })),
        "wrong_target",
      ],
      ["cmp-s3image", offer("cmp-s3image", key.manifest(s3Image)), "wrong_target"],
      ["cmp-short", offer("cmp-short", key.manifest(good, { sha256: "f".repeat(64) })), "truncated"],
      ["cmp-old", offer("cmp-old", key.manifest(older)), "downgrade"],
      ["cmp-big", offer("cmp-big", key.manifest(big)), "too_large"],
    ];
    for (const [campaign, sent, code] of cases) {
      await peer.publishOffer(sim.deviceId, sent);
      const final = await outcome(sim.deviceId, campaign);
      assert.equal(final.status, "failed", `${campaign}: ${JSON.stringify(final)}`);
      assert.equal(final.code, code, `${campaign}: ${final.reason}`);
      assert.ok(final.reason && final.reason.length > 10, `${campaign} says why: ${final.reason}`);
      assert.equal(sim.image.version, "0.1.0", `${campaign}: the old image runs`);
    }
    assert.equal(sim.restarts, 0, "nothing restarted the device");
    assert.equal(sim.boots.length, 1);
  });

  test("a downgrade goes ahead with the campaign's signed grant", async (t) => {
    const sim = await device(t, {});
    const newer = image({ version: "1.5.0", seed: 6 });
    peer.serve(newer);
    await peer.publishOffer(sim.deviceId, offer("cmp-up", key.manifest(newer, { version: "1.5.0" })));
    assert.equal((await outcome(sim.deviceId, "cmp-up")).status, "confirmed");
    const older = image({ version: "1.4.0", seed: 7 });
    peer.serve(older);
    const manifest = key.manifest(older, { version: "1.4.0" });
    await peer.publishOffer(
      sim.deviceId,
      offer("cmp-down", manifest, { downgrade: key.downgradeGrant("cmp-down", sha256Hex(older)) }),
    );
    const final = await outcome(sim.deviceId, "cmp-down");
    assert.equal(final.status, "confirmed", JSON.stringify(final));
    assert.equal(final.running, "1.4.0");
  });

  test("a download cut by the link at random chunks, and by power losses mid-write, resumes and completes", async (t) => {
    const sim = await device(t);
    const bytes = image({ version: "3.0.0", size: 400 * 1024, seed: 8 });
    peer.serve(bytes);
    const servedBefore = peer.bytesServed;
    // Fixed, arbitrary points: the same cuts every run. Then power off in the middle of the 60th
    // app-partition write (around 240 KB) and, once it is back, of its 12th write after that (while
    // it writes back what it had, or just after).
    sim.faults.dropLinkAtChunks(3, 14, 43);
    await sim.faults.powerLoss({ atOtaWrite: 60, offMs: 200 });
    await peer.publishOffer(sim.deviceId, offer("cmp-cut", key.manifest(bytes)));
    await waitUntil(() => sim.powerCycles >= 1, "the first power loss", 60_000);
    await sim.faults.powerLoss({ atOtaWrite: 12, offMs: 200 });
    await waitUntil(() => sim.powerCycles >= 2, "the second power loss", 60_000);
    const final = await outcome(sim.deviceId, "cmp-cut", 60_000);
    assert.equal(final.status, "confirmed", JSON.stringify(final));
    assert.equal(sim.image.version, "3.0.0");
    const served = peer.bytesServed - servedBefore;
    // Each cut costs at most a window (16 KB) again, each power loss at most a checkpoint (64 KB) and a window.
    assert.ok(served < bytes.length + 3 * 16 * 1024 + 2 * 80 * 1024, `${served} bytes served for ${bytes.length}`);
    const resumedAfterReboot = peer.requests.filter(
      (r) => r.deviceId === sim.deviceId && r.offset > 0 && r.offset % 65_536 === 0,
    );
    assert.ok(resumedAfterReboot.length > 0, "a download picked up at a checkpoint");
  });

  test("an image that crashes at boot rolls back by itself, and the old image reports it", async (t) => {
    const sim = await device(t);
    const crashing = image({ version: "4.0.0", projectName: SIM_IMAGE_MARKERS.crashAtBoot, seed: 9 });
    peer.serve(crashing);
    await peer.publishOffer(sim.deviceId, offer("cmp-crash", key.manifest(crashing, { version: "4.0.0" })));
    const final = await outcome(sim.deviceId, "cmp-crash");
    assert.equal(final.status, "rolled-back", JSON.stringify(final));
    assert.equal(final.code, "boot_failed");
    assert.equal(final.running, "0.1.0");
    assert.match(final.reason ?? "", /4\.0\.0 reset before it was confirmed \(reset: crash\)/);
    assert.deepEqual(
      sim.boots.map((boot) => boot.version),
      ["0.1.0", "4.0.0", "0.1.0"],
    );
    assert.equal(sim.image.version, "0.1.0");
  });

  test("an image that fails its health check (never reaches its gateway) rolls back to the old one", async (t) => {
    const sim = await device(t);
    const unhealthy = image({ version: "5.0.0", projectName: SIM_IMAGE_MARKERS.unhealthy, seed: 10 });
    peer.serve(unhealthy);
    await peer.publishOffer(sim.deviceId, offer("cmp-sick", key.manifest(unhealthy, { version: "5.0.0" })));
    const final = await outcome(sim.deviceId, "cmp-sick");
    assert.equal(final.status, "rolled-back", JSON.stringify(final));
    assert.equal(final.code, "health_check");
    assert.match(final.reason ?? "", /no connection to the gateway/);
    assert.deepEqual(
      sim.boots.map((boot) => [boot.version, boot.state]),
      [
        ["0.1.0", "undefined"],
        ["5.0.0", "pending-verify"],
        ["0.1.0", "valid"],
      ],
    );
  });

  test("key rotation: the new key is trusted only after the rotation record, the retired one never again", async (t) => {
    const sim = await device(t);
    const next = new SigningKey();
    const first = image({ version: "6.0.0", seed: 11 });
    peer.serve(first);
    await peer.publishOffer(sim.deviceId, offer("cmp-early", next.manifest(first, { version: "6.0.0" })));
    const early = await outcome(sim.deviceId, "cmp-early");
    assert.equal(early.code, "unknown_key", "signed by a key the device was never told about");

    const rotation = key.rotateTo(next, 1);
    await peer.publishOffer(
      sim.deviceId,
      offer("cmp-rotated", next.manifest(first, { version: "6.0.0" }), { trust: [rotation] }),
    );
    assert.equal((await outcome(sim.deviceId, "cmp-rotated")).status, "confirmed");

    const second = image({ version: "6.1.0", seed: 12 });
    peer.serve(second);
    await peer.publishOffer(
      sim.deviceId,
      offer("cmp-retired", key.manifest(second, { version: "6.1.0" }), { trust: [rotation] }),
    );
    const retired = await outcome(sim.deviceId, "cmp-retired");
    assert.equal(retired.code, "unknown_key", "the retired key signs nothing any more");
    assert.equal(sim.image.version, "6.0.0");
  });
});
