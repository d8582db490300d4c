// Password guessing is slowed per (account, client), progressively, and a stranger cannot lock an
// account's owner out: behind a trusted reverse proxy each client is its forwarded address, and
// the failures of one client do not delay another. The whole API has request limits too.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { delayAfter, FREE_FAILURES, LoginThrottle, MAX_DELAY_MS } from "../src/auth/login-throttle.ts";
import type { Credentials } from "../src/tenants/bootstrap.ts";
import { bearer, bootstrapTenant, login, PASSWORD, startTestCloud, type TestCloud } from "./helpers.ts";

describe("login throttling and request limits", () => {
  let cloud: TestCloud;
  let acme: Credentials;

  before(async () => {
    // The test's requests come from 127.0.0.1: that is the reverse proxy.
    cloud = await startTestCloud({ TRUST_PROXY: "127.0.0.1/32", RATE_LIMIT_ANONYMOUS_PER_MINUTE: "40" });
    acme = await bootstrapTenant(cloud.db, "Acme", ["dev-1"]);
  });
  after(() => cloud?.close());

  const attempt = (client: string, password: string, email = acme.admin.email) =>
    cloud.app.inject({
      method: "POST",
      url: "/api/auth/login",
      headers: { "x-forwarded-for": client },
      payload: { email, password },
    });

  test("the delay doubles after the free failures and is capped", () => {
    assert.deepEqual(
      Array.from({ length: FREE_FAILURES + 4 }, (_, i) => delayAfter(i)),
      [0, 0, 0, 0, 0, 1000, 2000, 4000, 8000],
    );
    assert.equal(delayAfter(100), MAX_DELAY_MS);
  });

  test("a stranger's failures slow only the stranger: the owner, behind the same proxy, signs in at once", async () => {
    for (let i = 0; i < FREE_FAILURES; i++) assert.equal((await attempt("203.0.113.7", "guess")).statusCode, 401);
    const slowed = await attempt("203.0.113.7", "guess");
    assert.equal(slowed.statusCode, 429);
    assert.equal(slowed.json().code, "login_throttled");
    assert.equal(slowed.headers["retry-after"], "1", "the first delay is one second, not a lockout");
    const owner = await attempt("198.51.100.20", PASSWORD);
    assert.equal(owner.statusCode, 200, "another client is not held back by the stranger's failures");
  });

  test("a throttled client may try again after its delay, and a success clears its count", async () => {
    let now = Date.UTC(2026, 0, 1);
    const throttle = new LoginThrottle(cloud.db, () => now);
    const client = "192.0.2.1";
    for (let i = 0; i < FREE_FAILURES + 2; i++) await throttle.recordFailure("someone@acme.test", client);
    assert.equal(await throttle.retryAfter("someone@acme.test", client), 4);
    now += 4000;
    assert.equal(await throttle.retryAfter("someone@acme.test", client), 0);
    await throttle.recordFailure("someone@acme.test", client);
    assert.equal(await throttle.retryAfter("someone@acme.test", client), 8);
    now += 15 * 60 * 1000;
    assert.equal(await throttle.retryAfter("someone@acme.test", client), 0, "forgotten after 15 minutes");
    await throttle.recordFailure("someone@acme.test", client);
    assert.equal(await throttle.retryAfter("someone@acme.test", client), 0, "counting starts again");
    await throttle.reset("someone@acme.test", client);
  });

  test("requests over the per-client limit are 429 problems with Retry-After; a session has its own budget", async () => {
    const session = await login(cloud.app, acme.admin.email);
    let limited: Awaited<ReturnType<typeof attempt>> | undefined;
    for (let i = 0; i < 60 && !limited; i++) {
      const response = await cloud.app.inject({
        method: "GET",
        url: "/api/health",
        headers: { "x-forwarded-for": "192.0.2.99" },
      });
      if (response.statusCode === 429) limited = response;
    }
    assert.ok(limited, "the anonymous limit was reached");
    assert.equal(limited.headers["content-type"], "application/problem+json; charset=utf-8");
    assert.equal(limited.json().code, "rate_limited");
    assert.ok(Number(limited.headers["retry-after"]) > 0);
    const other = await cloud.app.inject({ method: "GET", url: "/api/auth/me", headers: bearer(session) });
    assert.equal(other.statusCode, 200);
  });

  test("invented tokens buy no budget: they count against the client's address", async () => {
    const statuses: number[] = [];
    for (let i = 0; i < 60; i++) {
      const response = await cloud.app.inject({
        method: "GET",
        url: "/api/devices",
        headers: { ...bearer(`invented-${i}`), "x-forwarded-for": "192.0.2.150" },
      });
      statuses.push(response.statusCode);
    }
    assert.ok(statuses.includes(401));
    assert.ok(statuses.includes(429), "the client's limit applies");
  });
});
