// A real third-party client against the gateway: Debian's mosquitto_pub and
// mosquitto_sub, with a device's credentials.

import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { after, before, describe, test } from "node:test";
import { promisify } from "node:util";
import type { Gateway } from "../src/gateway.ts";
import { type CloudPeer, startCloudPeer, startGatewayFor } from "./cloud-peer.ts";
import { until } from "./until.ts";

const execFileAsync = promisify(execFile);

/** Exit code and stderr of a client run, whether or not it succeeded. */
function run(command: string, args: string[]): Promise<{ code: number; stderr: string }> {
  return execFileAsync(command, args).then(
    ({ stderr }) => ({ code: 0, stderr }),
    (error: { code?: number; stderr?: string }) => ({ code: error.code ?? -1, stderr: error.stderr ?? "" }),
  );
}
const DEVICES = { "mq-1": "token-mq-1-secret", "mq-2": "token-mq-2-secret" };

describe("mosquitto clients against the gateway", () => {
  let cloud: CloudPeer;
  let gateway: Gateway;
  const credentials = (id: keyof typeof DEVICES) => [
    "-h",
    "127.0.0.1",
    "-p",
    String(gateway.mqttPort),
    "-i",
    id,
    "-u",
    id,
    "-P",
    DEVICES[id],
    "-V",
    "mqttv311",
  ];

  before(async () => {
    cloud = await startCloudPeer(DEVICES);
    gateway = await startGatewayFor(cloud);
  });

  after(async () => {
    await gateway.stop();
    await cloud.close();
  });

  test("a wrong token is refused to mosquitto_pub", async () => {
    const args = credentials("mq-1");
    args[args.indexOf("-P") + 1] = "not-the-token";
    const refused = await run("mosquitto_pub", [...args, "-q", "1", "-t", "d/mq-1/telemetry", "-m", "{}"]);
    assert.notEqual(refused.code, 0);
    assert.match(refused.stderr, /not authori[sz]ed|bad user name or password/i);
  });

  test("mosquitto_pub publishes telemetry with QoS 1 that reaches the cloud", async () => {
    const batch = { v: 1, boot: 5, samples: [{ seq: 0, ts: 1_764_000_000_000, m: { temperature: 20.5 } }] };
    const published = await run("mosquitto_pub", [
      ...credentials("mq-1"),
      ...["-q", "1", "-t", "d/mq-1/telemetry", "-m", JSON.stringify(batch)],
    ]);
    assert.equal(published.code, 0, published.stderr);
    const forwarded = await until(
      () => cloud.ingests.flatMap((r) => r.telemetry).find((t) => t.deviceId === "mq-1"),
      "telemetry from mosquitto_pub",
    );
    assert.deepEqual(forwarded.batch, batch);
  });

  test("mosquitto_sub may subscribe to its own command topic but not to another device's", async () => {
    const own = await run("mosquitto_sub", [...credentials("mq-2"), "-q", "1", "-t", "d/mq-2/cmd", "-W", "1"]);
    // -W 1 ends a healthy subscription after one second with exit code 27 (timeout).
    assert.equal(own.code, 27, own.stderr);
    const before = await gateway.metrics.value("kestrel_gateway_acl_denials_total", { action: "subscribe" });
    const foreign = await run("mosquitto_sub", [...credentials("mq-2"), "-q", "1", "-t", "d/mq-1/cmd", "-W", "2"]);
    assert.match(foreign.stderr, /denied/i);
    assert.equal(
      (await gateway.metrics.value("kestrel_gateway_acl_denials_total", { action: "subscribe" })) - before,
      1,
    );
  });
});
