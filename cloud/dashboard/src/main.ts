// Dashboard entry: shows the login form or the device view, and refreshes the
// device list and the selected device's chart every few seconds.

import { ApiError, lastHour, listDevices, login, logout, SignedOut, savedSession } from "./api.ts";
import { DeviceTable } from "./device-list.ts";
import { TelemetryChart } from "./telemetry-chart.ts";

const REFRESH_MS = 3000;

function byId<T extends HTMLElement>(id: string): T {
  const element = document.getElementById(id);
  if (!element) throw new Error(`#${id} is missing from index.html`);
  return element as T;
}

const loginView = byId<HTMLElement>("login-view");
const appView = byId<HTMLElement>("app-view");
const loginForm = byId<HTMLFormElement>("login-form");
const loginError = byId<HTMLElement>("login-error");
const logoutButton = byId<HTMLButtonElement>("logout");
const signedInAs = byId<HTMLElement>("signed-in-as");
const status = byId<HTMLElement>("status");
const chartCard = byId<HTMLElement>("chart-card");
const chartTitle = byId<HTMLElement>("chart-title");
const chartElement = byId<HTMLElement>("chart");

let selected: string | undefined;
let chart: TelemetryChart | undefined;
let timer: number | undefined;

const table = new DeviceTable(byId("device-rows"), byId("no-devices"), (deviceId) => {
  selected = deviceId;
  chartTitle.textContent = deviceId;
  chartCard.hidden = false;
  chart ??= new TelemetryChart(chartElement);
  void refresh();
});

function showStatus(message: string | undefined): void {
  status.hidden = message === undefined;
  status.textContent = message ?? "";
}

function showLogin(message?: string): void {
  window.clearTimeout(timer);
  chart?.destroy();
  chart = undefined;
  selected = undefined;
  chartCard.hidden = true;
  appView.hidden = true;
  logoutButton.hidden = true;
  signedInAs.textContent = "";
  loginView.hidden = false;
  loginError.hidden = message === undefined;
  loginError.textContent = message ?? "";
}

function showApp(email: string): void {
  loginView.hidden = true;
  appView.hidden = false;
  logoutButton.hidden = false;
  signedInAs.textContent = email;
  void refresh();
}

async function refresh(): Promise<void> {
  window.clearTimeout(timer);
  try {
    const now = Date.now();
    const [devices, history] = await Promise.all([listDevices(), selected ? lastHour(selected, now) : undefined]);
    table.render(devices.items, now);
    table.select(selected);
    if (history && history.deviceId === selected) await chart?.show(history);
    showStatus(undefined);
  } catch (error) {
    if (error instanceof SignedOut) return showLogin("Your session ended; please sign in again.");
    showStatus(error instanceof Error ? `Cannot refresh: ${error.message}` : "Cannot refresh");
  }
  timer = window.setTimeout(() => void refresh(), REFRESH_MS);
}

loginForm.addEventListener("submit", (event) => {
  event.preventDefault();
  const data = new FormData(loginForm);
  const email = String(data.get("email") ?? "");
  const password = String(data.get("password") ?? "");
  login(email, password).then(
    (session) => {
      loginForm.reset();
      showApp(session.email);
    },
    (error: unknown) => {
      const message =
        error instanceof ApiError && error.code === "login_failed" ? "Wrong email or password." : String(error);
      showLogin(error instanceof ApiError ? (error.code === "login_failed" ? message : error.message) : message);
    },
  );
});

logoutButton.addEventListener("click", () => {
  logout().finally(() => showLogin());
});

const session = savedSession();
if (session) showApp(session.email);
else showLogin();
