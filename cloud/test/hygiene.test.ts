import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { MAX_DEPTH } from "../src/http/hygiene.ts";
import type { Credentials } from "../src/tenants/bootstrap.ts";
import type { InvitationView } from "../src/tenants/org-schema.ts";
import { bearer, bootstrapTenant, ingest, login, startTestCloud, type TestCloud } from "./helpers.ts";

describe("input hygiene", () => {
  let cloud: TestCloud;
  let acme: Credentials;
  let admin: string;

  before(async () => {
    cloud = await startTestCloud();
    acme = await bootstrapTenant(cloud.db, "Acme", ["dev-1"]);
    admin = await login(cloud.app, acme.admin.email);
  });
  after(() => cloud?.close());

  const assertForbiddenKey = (response: { statusCode: number; json(): { code: string; detail: string } }) => {
    assert.equal(response.statusCode, 400);
    assert.equal(response.json().code, "forbidden_key");
  };

  test("body keys beginning with $ or containing a dot are refused at any depth, before the schema", async () => {
    const operator = await cloud.app.inject({
      method: "POST",
      url: "/api/auth/login",
      payload: { email: { $ne: "" }, password: "x" },
    });
    assertForbiddenKey(operator);
    assert.match(operator.json().detail, /body key "email\/\$ne"/);

    const dotted = await cloud.app.inject({
      method: "PATCH",
      url: "/api/org/settings",
      headers: bearer(admin),
      payload: { retention: { "raw.Days": 1, rollupDays: 2 } },
    });
    assertForbiddenKey(dotted);

    // Ingest items are the wire validators' to judge, one by one: the bad item alone is rejected.
    const inArray = await ingest(cloud.app, acme.gatewayKey, {
      telemetry: [
        { deviceId: "dev-1", batch: { v: 1, boot: 1, samples: [{ seq: 0, ts: Date.now(), m: { $inc: 1 } }] } },
      ],
    });
    assert.equal(inArray.statusCode, 200, inArray.body);
    assert.deepEqual(
      inArray.json().rejected.map((item: { index: number; code: string }) => [item.index, item.code]),
      [[0, "invalid_metric"]],
    );
  });

  test("query keys beginning with $ or containing a dot are refused", async () => {
    for (const query of ["$where=1", "tags.x=1"]) {
      const response = await cloud.app.inject({ method: "GET", url: `/api/org?${query}`, headers: bearer(admin) });
      assertForbiddenKey(response);
    }
  });

  test(`JSON nested deeper than ${MAX_DEPTH} levels is refused`, async () => {
    let deep: object = { leaf: 1 };
    for (let i = 0; i < MAX_DEPTH + 2; i++) deep = { a: deep };
    const response = await ingest(cloud.app, acme.gatewayKey, { telemetry: [{ deviceId: "dev-1", batch: deep }] });
    assert.equal(response.statusCode, 400);
    assert.equal(response.json().code, "too_deep");
  });

  test("strings are normalised to NFC: a decomposed email is stored composed", async () => {
    const decomposed = "ame\u0301lie@acme.test";
    const invite = (email: string) =>
      cloud.app.inject({
        method: "POST",
        url: "/api/org/members",
        headers: bearer(admin),
        payload: { email, role: "viewer" },
      });
    const added = await invite(decomposed);
    assert.equal(added.statusCode, 202, added.body);
    assert.equal(added.json<InvitationView>().email, "am\u00e9lie@acme.test");
    assert.equal((await invite("am\u00e9lie@acme.test")).statusCode, 202);
    const pending = await cloud.app.inject({ method: "GET", url: "/api/org/invitations", headers: bearer(admin) });
    const emails = pending.json<{ items: InvitationView[] }>().items.map((item) => item.email);
    assert.deepEqual(emails, ["am\u00e9lie@acme.test"], "both spellings are one invitee");
  });
});
