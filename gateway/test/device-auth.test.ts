// Device authentication when the cloud cannot answer: a device the cloud accepted recently, with
// the same token, is let in on that verdict for a bounded time; any other device is refused with a
// retry-able error; the cloud's no always wins and is never cached.

import assert from "node:assert/strict";
import { test } from "node:test";
import { DeviceAuthenticator } from "../src/broker/device-auth.ts";
import { type CloudClient, CloudError, type DeviceAuthResult } from "../src/uplink/cloud-client.ts";

/** The cloud's side, scripted: an answer per device, or down (a retry-able failure) for everyone. */
class ScriptedCloud implements Pick<CloudClient, "authenticateDevice"> {
  down = false;
  asked = 0;
  readonly timeouts: Array<number | undefined> = [];
  readonly tokens = new Map<string, string>();

  async authenticateDevice(deviceId: string, token: string, timeoutMs?: number): Promise<DeviceAuthResult> {
    this.asked++;
    this.timeouts.push(timeoutMs);
    await new Promise((resolve) => setImmediate(resolve));
    if (this.down) throw new CloudError("database_unavailable", "cloud answered 503", true, 503);
    return this.tokens.get(deviceId) === token ? { ok: true, tenantId: "t1" } : { ok: false, reason: "denied" };
  }
}

function setup(options: { ttlMs?: number; staleMaxMs?: number; maxDevices?: number } = {}) {
  const cloud = new ScriptedCloud();
  cloud.tokens.set("dev-1", "token-1");
  cloud.tokens.set("dev-2", "token-2");
  let now = 1_000_000;
  const auth = new DeviceAuthenticator(cloud, {
    ttlMs: options.ttlMs ?? 60_000,
    staleMaxMs: options.staleMaxMs ?? 30 * 60_000,
    askTimeoutMs: 3_000,
    maxDevices: options.maxDevices,
    now: () => now,
  });
  return { cloud, auth, advance: (ms: number) => (now += ms) };
}

test("a yes is reused within the TTL, then asked again, with the ask's own deadline", async () => {
  const { cloud, auth, advance } = setup();
  assert.deepEqual(await auth.verify("dev-1", "token-1"), { ok: true, tenantId: "t1", source: "cloud" });
  assert.deepEqual(await auth.verify("dev-1", "token-1"), { ok: true, tenantId: "t1", source: "cache" });
  assert.equal(cloud.asked, 1);
  advance(60_001);
  assert.equal((await auth.verify("dev-1", "token-1")).ok, true);
  assert.equal(cloud.asked, 2);
  assert.deepEqual(cloud.timeouts, [3_000, 3_000]);
});

test("with the cloud down, a known device with its token is let in until the stale limit, then refused", async () => {
  const { cloud, auth, advance } = setup();
  await auth.verify("dev-1", "token-1");
  cloud.down = true;
  advance(10 * 60_000);
  assert.deepEqual(await auth.verify("dev-1", "token-1"), { ok: true, tenantId: "t1", source: "stale" });
  advance(20 * 60_000);
  await assert.rejects(
    auth.verify("dev-1", "token-1"),
    (error: unknown) => error instanceof CloudError && error.retryable,
  );
  cloud.down = false;
  assert.deepEqual(await auth.verify("dev-1", "token-1"), { ok: true, tenantId: "t1", source: "cloud" });
});

test("with the cloud down, an unknown device or another token is refused with a retry-able error", async () => {
  const { cloud, auth } = setup();
  await auth.verify("dev-1", "token-1");
  cloud.down = true;
  for (const [deviceId, token] of [
    ["dev-2", "token-2"],
    ["dev-1", "stolen"],
  ] as const) {
    await assert.rejects(
      auth.verify(deviceId, token),
      (error: unknown) => error instanceof CloudError && error.retryable && error.code === "database_unavailable",
    );
  }
});

test("the cloud's no is final: it forgets the earlier yes, even for a later outage", async () => {
  const { cloud, auth, advance } = setup();
  await auth.verify("dev-1", "token-1");
  cloud.tokens.set("dev-1", "rotated");
  advance(60_001);
  assert.deepEqual(await auth.verify("dev-1", "token-1"), { ok: false, reason: "denied" });
  cloud.down = true;
  await assert.rejects(auth.verify("dev-1", "token-1"), CloudError);
});

test("a reconnect storm of one device asks the cloud once", async () => {
  const { cloud, auth } = setup();
  const answers = await Promise.all(Array.from({ length: 20 }, () => auth.verify("dev-1", "token-1")));
  assert.ok(answers.every((answer) => answer.ok));
  assert.equal(cloud.asked, 1);
});

test("memory is bounded: past maxDevices the longest unverified verdicts go", async () => {
  const { cloud, auth } = setup({ maxDevices: 1 });
  await auth.verify("dev-1", "token-1");
  await auth.verify("dev-2", "token-2");
  cloud.down = true;
  await assert.rejects(auth.verify("dev-1", "token-1"), CloudError);
  assert.equal((await auth.verify("dev-2", "token-2")).ok, true);
});
