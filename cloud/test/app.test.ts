import assert from "node:assert/strict";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { startTestCloud, type TestCloud } from "./helpers.ts";

describe("app-wide behaviour", () => {
  let dashboardDir: string;
  let cloud: TestCloud;
  let unbuilt: TestCloud;

  before(async () => {
    dashboardDir = await mkdtemp(join(tmpdir(), "kestrel-dashboard-"));
    await mkdir(dashboardDir, { recursive: true });
    await writeFile(join(dashboardDir, "index.html"), "<!doctype html><title>Kestrel</title>");
    cloud = await startTestCloud({ DASHBOARD_DIR: dashboardDir });
    unbuilt = await startTestCloud({ DASHBOARD_DIR: join(dashboardDir, "missing") });
  });
  after(async () => {
    await cloud?.close();
    await unbuilt?.close();
    await rm(dashboardDir, { recursive: true, force: true });
  });

  test("an unknown route is a 404 problem", async () => {
    for (const url of ["/api/nope", "/nope.js"]) {
      const response = await cloud.app.inject({ method: "GET", url });
      assert.equal(response.statusCode, 404, url);
      assert.equal(response.headers["content-type"], "application/problem+json; charset=utf-8");
      assert.equal(response.json().code, "not_found");
    }
  });

  test("health answers ok while the database answers", async () => {
    const response = await cloud.app.inject({ method: "GET", url: "/api/health" });
    assert.equal(response.statusCode, 200);
    assert.deepEqual(response.json(), { status: "ok" });
  });

  test("the dashboard is served at / with a restrictive content security policy", async () => {
    const response = await cloud.app.inject({ method: "GET", url: "/" });
    assert.equal(response.statusCode, 200);
    assert.match(response.headers["content-type"] as string, /^text\/html/);
    assert.match(response.body, /<title>Kestrel<\/title>/);
    assert.match(response.headers["content-security-policy"] as string, /default-src 'self'/);
  });

  test("without a dashboard build, / says how to build it", async () => {
    const response = await unbuilt.app.inject({ method: "GET", url: "/" });
    assert.equal(response.statusCode, 503);
    assert.equal(response.json().code, "dashboard_not_built");
    assert.match(response.json().detail, /npm run build -w cloud/);
  });

  test("a body over the limit is a 413 problem", async () => {
    const response = await cloud.app.inject({
      method: "POST",
      url: "/api/auth/login",
      payload: { email: "a@b.c", password: "x".repeat(70_000) },
    });
    assert.equal(response.statusCode, 413);
    assert.equal(response.json().code, "payload_too_large");
  });
});
