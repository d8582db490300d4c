// Bounds the API documents are in its schemas and refused with 400, not clamped or let through:
// list limits outside their range, and control characters (NUL among them) in names and emails.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { countPattern } from "../src/http/text-schema.ts";
import type { Credentials } from "../src/tenants/bootstrap.ts";
import { bearer, bootstrapTenant, login, startTestCloud, type TestCloud } from "./helpers.ts";

describe("input bounds", () => {
  let cloud: TestCloud;
  let acme: Credentials;
  let session: string;

  before(async () => {
    cloud = await startTestCloud();
    acme = await bootstrapTenant(cloud.db, "Acme", ["dev-1"]);
    session = await login(cloud.app, acme.admin.email);
  });
  after(() => cloud?.close());

  const call = (method: "GET" | "POST" | "PATCH", url: string, payload?: object) =>
    cloud.app.inject({ method, url, headers: bearer(session), ...(payload ? { payload } : {}) });

  test("countPattern matches exactly 1..max without leading zeros", () => {
    for (const max of [1, 20, 100, 200, 1000]) {
      const pattern = new RegExp(countPattern(max));
      for (let n = 0; n <= 1100; n++) assert.equal(pattern.test(String(n)), n >= 1 && n <= max, `${n} in 1..${max}`);
      for (const text of ["01", "", "-1", "1.0", " 1"]) assert.equal(pattern.test(text), false, text);
    }
  });

  test("list limits outside their documented range are 400, the bounds themselves are accepted", async () => {
    const lists: Array<[string, number]> = [
      ["/api/devices/dev-1/logs", 1000],
      ["/api/devices/dev-1/commands", 100],
      ["/api/devices", 200],
      ["/api/exports/runs", 200],
      ["/api/telemetry/latest", 1000],
      ["/api/artifacts", 200],
      ["/api/campaigns", 100],
    ];
    for (const [url, max] of lists) {
      for (const limit of ["0", String(max + 1)]) {
        const response = await call("GET", `${url}?limit=${limit}`);
        assert.equal(response.statusCode, 400, `${url}?limit=${limit}`);
        assert.equal(response.json().code, "invalid_request");
      }
      for (const limit of ["1", String(max)])
        assert.equal((await call("GET", `${url}?limit=${limit}`)).statusCode, 200, `${url}?limit=${limit}`);
    }
  });

  test("names and emails with NUL or other control characters are refused", async () => {
    const attempts: Array<[string, string, object]> = [
      ["PATCH", "/api/devices/dev-1", { name: "Press\u0000 7" }],
      ["PATCH", "/api/devices/dev-1", { name: "Press\u001b[31m" }],
      ["POST", "/api/keys", { name: "ci\u0000", scopes: ["read"] }],
      [
        "POST",
        "/api/exports/schedules",
        {
          name: "nightly\u0000",
          cron: "0 2 * * *",
          devices: "all",
          rangeSeconds: 86_400,
          format: "csv",
          destination: { type: "download" },
        },
      ],
      ["POST", "/api/org/members", { email: "op\u0000@example.com", role: "user" }],
      ["POST", "/api/campaigns", { name: "fw\u0000 1.3", artifactId: "art_x", target: { devices: ["dev-1"] } }],
    ];
    for (const [method, url, payload] of attempts) {
      const response = await call(method as "POST", url, payload);
      assert.equal(response.statusCode, 400, `${method} ${url} ${JSON.stringify(payload)}`);
      assert.equal(response.json().code, "invalid_request");
    }
    assert.equal((await call("PATCH", "/api/devices/dev-1", { name: "Press 7 – hall B" })).statusCode, 200);
  });
});
