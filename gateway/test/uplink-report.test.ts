// The gateway reports its uplink's progress to the real cloud: how many items wait and when the
// oldest arrived, so scheduled exports know when a range's samples are all in.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { pino } from "pino";
import { GatewayMetrics } from "../src/metrics.ts";
import { CloudClient } from "../src/uplink/cloud-client.ts";
import { gatewayIdOf, UplinkReporter } from "../src/uplink/uplink-report.ts";
import { RealCloud, tempDir } from "./real-cloud.ts";

describe("uplink progress reports", () => {
  let cloud: RealCloud;

  before(async () => {
    cloud = await RealCloud.start(["dev-1"]);
  });
  after(() => cloud?.stop());

  test("a gateway's id is kept in its data directory unless GATEWAY_ID names it", async () => {
    const dir = await tempDir("gateway-id");
    const first = await gatewayIdOf(dir, undefined);
    assert.match(first, /^[A-Za-z0-9_-]{16}$/);
    assert.equal(await gatewayIdOf(dir, undefined), first);
    assert.equal(await gatewayIdOf(dir, "site-a"), "site-a");
  });

  test("the queue's depth and oldest item reach the cloud, and an empty queue says complete up to now", async () => {
    const client = new CloudClient({ baseUrl: cloud.url, gatewayKey: cloud.credentials.gatewayKey, timeoutMs: 2000 });
    const queue = { depth: 3, oldestAgeMs: async () => 4000 };
    const metrics = new GatewayMetrics();
    const reporter = new UplinkReporter({
      cloud: client,
      forwarder: queue,
      gatewayId: "site-a",
      intervalMs: 60_000,
      logger: pino({ level: "silent" }),
      metrics,
    });
    const before = Date.now();
    await reporter.reportOnce();
    const stored = await cloud.uplinkProgress();
    assert.equal(stored.length, 1);
    assert.equal(stored[0]?.gatewayId, "site-a");
    assert.equal(stored[0]?.pending, 3);
    const until = stored[0]?.completeUntil.getTime() ?? 0;
    assert.ok(until >= before - 4000 && until <= Date.now() - 4000, `${until}`);

    queue.depth = 0;
    await reporter.reportOnce();
    const empty = (await cloud.uplinkProgress())[0];
    assert.equal(empty?.pending, 0);
    assert.ok((empty?.completeUntil.getTime() ?? 0) >= before, "nothing waits: complete up to the report");
    assert.equal(await metrics.value("kestrel_gateway_uplink_reports_failed_total"), 0);
  });
});
