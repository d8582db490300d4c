// The benchmarks' compiled load generator (tools/loadgen): its own tests (`go test`: the packet
// reader on split and coalesced reads, the raw client against Debian's mosquitto and a scripted
// broker), then its raw client against the gateway, with token authentication, through the
// driver the benchmarks use (bench/loadgen.ts).

import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { promisify } from "node:util";
import { buildLoadTools, type LoadDevice, type LoadTools, startLoad } from "../bench/loadgen.ts";
import type { Gateway } from "../src/gateway.ts";
import { type CloudPeer, startCloudPeer, startGatewayFor } from "./cloud-peer.ts";

const CLIENTS = 20;
const MESSAGES = 50;
const DEVICES = Object.fromEntries(Array.from({ length: CLIENTS }, (_, i) => [`lg-${i}`, `token-${i}`]));

test("the generator's Go tests pass", async () => {
  const dir = join(import.meta.dirname, "..", "..", "tools", "loadgen");
  const { stdout } = await promisify(execFile)("go", ["test", "-count=1", "."], { cwd: dir });
  assert.match(stdout, /^ok\s/m);
});

let cloud: CloudPeer;
let gateway: Gateway;
let tools: LoadTools;

before(async () => {
  tools = await buildLoadTools();
  cloud = await startCloudPeer(DEVICES);
  gateway = await startGatewayFor(cloud);
});

after(async () => {
  await gateway.stop();
  await cloud.close();
});

async function publish(devices: LoadDevice[], inflight: number) {
  const load = await startLoad(tools.loadgen, {
    port: gateway.mqttPort as number,
    devices,
    messages: MESSAGES,
    inflight,
    generators: 2,
    brokerPid: process.pid,
  });
  return load.run().finally(() => load.close());
}

test("the raw client's every publish to the gateway is acknowledged and timed, and acked as telemetry", async () => {
  const devices = Object.entries(DEVICES).map(([id, token]) => ({ id, token }));
  for (const inflight of [1, 5]) {
    const result = await publish(devices, inflight);
    assert.equal(result.errors, 0);
    assert.equal(result.acked, CLIENTS * MESSAGES);
    assert.ok(result.p50Ms > 0 && result.p99Ms >= result.p50Ms, `p50 ${result.p50Ms} ms, p99 ${result.p99Ms} ms`);
    // The gateway sends a batch's telemetry ack with its PUBACK; the window ends on the last PUBACK.
    assert.ok(result.telemetryAcks >= CLIENTS * (MESSAGES - 1), `${result.telemetryAcks} telemetry acks`);
  }
});

test("a device the gateway refuses (CONNACK return code 4) fails the run before it starts", async () => {
  await assert.rejects(
    publish([{ id: "lg-0", token: "not-its-token" }], 1),
    /load generator 0 exited with 1 before its clients were connected/,
  );
});
