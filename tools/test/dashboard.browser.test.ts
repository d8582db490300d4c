// The dashboard as an operator sees it, in Debian's Chromium: log in, search,
// filter and page the device list, pick a simulated device, and see its state
// and its readings drawn by ApexCharts; switch to another organization.

import assert from "node:assert/strict";
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { bootstrap, connectDb, type EmbeddedFerretDb, loadConfig, startEmbeddedFerretDb } from "@kestrel/cloud";
import { type Browser, chromium, type Page } from "playwright-core";
import { type Platform, startPlatform } from "../src/platform.ts";
import { CloudApi, silent, tempDir, until } from "./helpers.ts";

const CHROMIUM = process.env.CHROMIUM_PATH || "/usr/bin/chromium";
const ARTIFACTS = join(import.meta.dirname, "..", "..", "test-artifacts");

let platform: Platform;
let browser: Browser;
// The platform's database, started here so the second organization can be bootstrapped into it.
let ferret: EmbeddedFerretDb;
/** Devices added through the API, beyond the simulated ones: more than one page of the list. */
const SHELVED = 30;
// The dashboard's page size.
const PAGE_SIZE = 25;

before(async () => {
  const dataDir = await tempDir("browser");
  ferret = await startEmbeddedFerretDb({ dataDir: join(dataDir, "ferretdb") });
  platform = await startPlatform({
    dataDir,
    mongoUri: ferret.uri,
    deviceCount: 2,
    logger: silent,
    sampleIntervalMs: 200,
    samplesPerBatch: 2,
  });
  const api = new CloudApi(platform.cloudUrl);
  await api.login(platform.credentials.admin.email, platform.credentials.admin.password);
  for (let i = 0; i < SHELVED; i++) {
    const deviceId = `shelf-${String(i).padStart(2, "0")}`;
    await api.request("POST", "/api/devices", { deviceId, name: `Spare ${i}`, tags: ["spare"] });
  }
  // The list's online filter is checked against what the devices reported.
  await until(async () => {
    const list = (await api.request("GET", "/api/devices?online=true")) as { items: unknown[] };
    return list.items.length === 2 ? true : undefined;
  }, "both simulated devices online");
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"],
  });
});

after(async () => {
  await browser?.close();
  await platform?.stop();
  await ferret?.stop();
});

const rows = (page: Page) => page.locator('[data-testid="device-row"]');

/** Waits until the list shows exactly these device ids, in this order. */
async function listShows(page: Page, deviceIds: string[]): Promise<void> {
  await page.waitForFunction(
    (expected) =>
      [...document.querySelectorAll<HTMLElement>('[data-testid="device-row"]')]
        .map((row) => row.dataset.deviceId)
        .join() === expected.join(),
    deviceIds,
    { timeout: 15_000 },
  );
}

/** A new page logged in as the platform's admin, and the page errors it collects. */
async function loggedIn() {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  const errors: string[] = [];
  page.on("pageerror", (error) => errors.push(error.message));
  await page.goto(`${platform.cloudUrl}/`);
  await page.getByTestId("login-email").fill(platform.credentials.admin.email);
  await page.getByTestId("login-password").fill(platform.credentials.admin.password);
  await page.getByTestId("login-submit").click();
  return { page, errors };
}

test("an operator logs in, filters and pages the devices, opens one and sees its state and chart", async () => {
  const { page, errors } = await loggedIn();

  const shelved = Array.from({ length: SHELVED }, (_, i) => `shelf-${String(i).padStart(2, "0")}`);
  const simulated = platform.credentials.devices.map((device) => device.deviceId);
  const all = [...shelved, ...simulated].sort();
  await listShows(page, all.slice(0, PAGE_SIZE));
  assert.equal(await page.getByTestId("org-switch").isVisible(), false, "one organization: no switcher");
  await page.getByTestId("page-next").click();
  await listShows(page, all.slice(PAGE_SIZE));
  assert.equal(await page.getByTestId("page-next").isDisabled(), true);
  assert.equal(await page.getByTestId("page-number").textContent(), "Page 2");
  await page.getByTestId("page-prev").click();
  await listShows(page, all.slice(0, PAGE_SIZE));

  await page.getByTestId("device-search").fill("SPARE 1");
  await listShows(
    page,
    shelved.filter((_, i) => String(i).startsWith("1")),
  );
  await page.getByTestId("device-search").fill("");
  await page.getByTestId("filter-online").selectOption("true");
  await listShows(page, simulated);
  const fw = await page.locator(`[data-device-id="${simulated[0]}"] td`).nth(3).textContent();
  assert.ok(fw && fw !== "–", `firmware shown: ${fw}`);
  await page.getByTestId("filter-online").selectOption("false");
  await page.getByTestId("filter-tag").fill("spare");
  await listShows(page, shelved.slice(0, PAGE_SIZE));
  await page.getByTestId("filter-tag").fill("");
  await page.getByTestId("filter-online").selectOption("");
  await page.getByTestId("filter-fw").fill(fw);
  await listShows(page, simulated);
  assert.equal(await rows(page).count(), simulated.length);

  const [deviceId] = simulated;
  assert.ok(deviceId);
  await page.locator(`[data-testid="device-row"][data-device-id="${deviceId}"]`).click();
  const detail = page.getByTestId("device-detail");
  await detail.locator('[data-field="reset"]').waitFor({ timeout: 15_000 });
  const reset = await detail.locator('[data-field="reset"]').textContent();
  assert.match(reset ?? "", /power-on|watchdog|crash|update|reboot|brownout|unknown/);
  assert.equal(await detail.locator('[data-field="status"]').textContent(), "online");
  assert.equal(await detail.locator('[data-field="fw"]').textContent(), fw);

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

test("a user of two organizations switches between them and sees each one's devices", async () => {
  const database = await connectDb(ferret.uri, loadConfig(process.env).mongoDb);
  const globexDevices = ["globex-1", "globex-2"];
  try {
    const globex = await bootstrap(database.db, {
      tenantName: "Globex",
      adminEmail: "admin@globex.test",
      deviceIds: globexDevices,
    });
    const globexAdmin = new CloudApi(platform.cloudUrl);
    await globexAdmin.login(globex.admin.email, globex.admin.password);
    // Membership is an invitation its user accepts: in the dashboard, below.
    await globexAdmin.request("POST", "/api/org/members", { email: platform.credentials.admin.email, role: "viewer" });
  } finally {
    await database.close();
  }

  const { page, errors } = await loggedIn();
  const invitations = page.getByTestId("invitations");
  await invitations.waitFor({ timeout: 15_000 });
  await page.screenshot({ path: join(ARTIFACTS, "dashboard-invitation.png") });
  assert.match((await invitations.textContent()) ?? "", /admin@globex\.test invites you to Globex as viewer/);
  await page.getByTestId("invitation-accept").click();
  await invitations.waitFor({ state: "hidden", timeout: 15_000 });

  const simulated = platform.credentials.devices.map((device) => device.deviceId);
  await page.getByTestId("filter-online").selectOption("true");
  await listShows(page, simulated);
  const switcher = page.getByTestId("org-switch");
  assert.equal(await switcher.isVisible(), true);
  assert.deepEqual(await switcher.locator("option").allTextContents(), ["Local", "Globex"]);
  const [deviceId] = simulated;
  await page.locator(`[data-testid="device-row"][data-device-id="${deviceId}"]`).click();
  await page.getByTestId("device-detail").locator('[data-field="status"]').waitFor({ timeout: 15_000 });

  await switcher.selectOption({ label: "Globex" });
  await listShows(page, globexDevices);
  assert.equal(await page.getByTestId("filter-online").inputValue(), "", "filters start over");
  assert.equal(await page.locator("#chart-card").isHidden(), true, "the other organization's device is closed");
  // The list keeps refreshing with the new session, not the revoked one.
  await page.waitForTimeout(3500);
  await listShows(page, globexDevices);
  await page.reload();
  await listShows(page, globexDevices);

  await page.getByTestId("org-switch").selectOption({ label: "Local" });
  // The switcher is disabled until the switch is done, which resets the filters: choose one after.
  await page.waitForFunction(
    () => !(document.querySelector('[data-testid="org-switch"]') as HTMLSelectElement | null)?.disabled,
  );
  await page.getByTestId("filter-online").selectOption("true");
  await listShows(page, simulated);
  await mkdir(ARTIFACTS, { recursive: true });
  await page.screenshot({ path: join(ARTIFACTS, "dashboard-switch.png"), fullPage: true });
  assert.deepEqual(errors, []);
});
