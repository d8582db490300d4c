// Shutdown: neither a waiting long poll nor a connection a client opened and
// never used keeps the server from closing.

import assert from "node:assert/strict";
import { once } from "node:events";
import { connect } from "node:net";
import { test } from "node:test";
import { bearer, bootstrapTenant, startTestCloud } from "./helpers.ts";

test("closing answers a waiting long poll with no commands and drops unused connections", async () => {
  const cloud = await startTestCloud();
  try {
    const acme = await bootstrapTenant(cloud.db, "Acme", ["dev-1"]);
    const address = await cloud.app.listen({ port: 0, host: "127.0.0.1" });
    const port = Number(new URL(address).port);
    const unused = connect(port, "127.0.0.1");
    await once(unused, "connect");
    const unusedClosed = once(unused, "close");
    const poll = fetch(`${address}/api/gateway/v1/commands/poll`, {
      method: "POST",
      headers: { ...bearer(acme.gatewayKey), "content-type": "application/json" },
      body: JSON.stringify({ devices: ["dev-1"], wait: 25 }),
    });
    // The poll is waiting once its first look at the queue found nothing; give it that moment.
    await new Promise((resolve) => setTimeout(resolve, 300));
    await cloud.app.close();
    const answer = await poll;
    assert.equal(answer.status, 200);
    assert.deepEqual(await answer.json(), { commands: [] });
    assert.equal(answer.headers.get("connection"), "close");
    await unusedClosed;
    assert.equal(unused.bytesRead, 0, "the server closed the unused connection without answering");
  } finally {
    await cloud.close();
  }
});
