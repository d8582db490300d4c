// The dashboard as an operator sees it, in Debian's Chromium: log in, pick a
// simulated device, and see its readings drawn by ApexCharts.

import assert from "node:assert/strict";
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { type Browser, chromium } from "playwright-core";
import { type Platform, startPlatform } from "../src/platform.ts";
import { silent, tempDir } from "./helpers.ts";

const CHROMIUM = process.env.CHROMIUM_PATH || "/usr/bin/chromium";
const ARTIFACTS = join(import.meta.dirname, "..", "..", "test-artifacts");

let platform: Platform;
let browser: Browser;

before(async () => {
  platform = await startPlatform({
    dataDir: await tempDir("browser"),
    deviceCount: 1,
    logger: silent,
    sampleIntervalMs: 200,
    samplesPerBatch: 2,
  });
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"],
  });
});

after(async () => {
  await browser?.close();
  await platform?.stop();
});

test("an operator logs in, opens a simulated device and sees its temperature chart with points", async () => {
  const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  const errors: string[] = [];
  page.on("pageerror", (error) => errors.push(error.message));

  await page.goto(`${platform.cloudUrl}/`);
  await page.getByTestId("login-email").fill(platform.credentials.admin.email);
  await page.getByTestId("login-password").fill(platform.credentials.admin.password);
  await page.getByTestId("login-submit").click();

  const [device] = platform.credentials.devices;
  assert.ok(device);
  const row = page.locator(`[data-testid="device-row"][data-device-id="${device.deviceId}"]`);
  await row.waitFor({ timeout: 15_000 });
  await row.click();

  const chart = page.getByTestId("chart-telemetry");
  await chart.waitFor({ timeout: 15_000 });
  // ApexCharts draws each series as an SVG path; wait until it holds several points.
  await page.waitForFunction(
    () => {
      const paths = document.querySelectorAll('[data-testid="chart-telemetry"] .apexcharts-series path[d]');
      return [...paths].some((p) => (p.getAttribute("d")?.match(/[LC]/g)?.length ?? 0) >= 3);
    },
    undefined,
    { timeout: 30_000 },
  );
  const seriesNames = await chart.locator(".apexcharts-legend-text").allTextContents();
  assert.ok(
    seriesNames.some((name) => /temperature/i.test(name)),
    `legend: ${seriesNames.join(", ")}`,
  );

  await mkdir(ARTIFACTS, { recursive: true });
  await page.screenshot({ path: join(ARTIFACTS, "dashboard.png"), fullPage: true });
  assert.deepEqual(errors, []);
});
