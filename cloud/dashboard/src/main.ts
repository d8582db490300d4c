// Dashboard entry: shows the login form or the device view, and refreshes the
// device list (as filtered and paged), the selected device's state and its
// chart every few seconds; a user of several organizations switches between them,
// and accepts or declines invitations to join others.

import {
  ApiError,
  acceptInvitation,
  type DeviceFilters,
  declineInvitation,
  getDevice,
  lastHour,
  listDevices,
  listInvitations,
  login,
  logout,
  type Session,
  SignedOut,
  savedSession,
  switchOrganization,
} from "./api.ts";
import { DeviceDetail } from "./device-detail.ts";
import { DeviceTable } from "./device-list.ts";
import { startErrorTracking } from "./error-tracking.ts";
import { TelemetryChart } from "./telemetry-chart.ts";

// Reporting is best effort: a dashboard without it still works.
startErrorTracking().catch(() => undefined);

const REFRESH_MS = 3000;
// Typing settles before the list is asked again.
const FILTER_DELAY_MS = 250;

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
const orgSwitcher = byId<HTMLElement>("org-switcher");
const orgSelect = byId<HTMLSelectElement>("org-select");
const invitationList = byId<HTMLUListElement>("invitations");
const status = byId<HTMLElement>("status");
const chartCard = byId<HTMLElement>("chart-card");
const chartTitle = byId<HTMLElement>("chart-title");
const chartElement = byId<HTMLElement>("chart");
const filterForm = byId<HTMLFormElement>("device-filters");
const prevButton = byId<HTMLButtonElement>("page-prev");
const nextButton = byId<HTMLButtonElement>("page-next");
const pageNumber = byId<HTMLElement>("page-number");
const detail = new DeviceDetail(byId<HTMLDListElement>("device-detail"));

let selected: string | undefined;
let chart: TelemetryChart | undefined;
let timer: number | undefined;
let filterTimer: number | undefined;
let filters: DeviceFilters = {};
/** The cursor of each page up to the current one (the first page has none). */
let cursors: Array<string | undefined> = [undefined];
let nextCursor: string | null = null;
/** Counts refreshes, so an answer overtaken by a newer request (new filters, another page) is dropped. */
let generation = 0;

function readFilters(): DeviceFilters {
  const data = new FormData(filterForm);
  const online = String(data.get("online") ?? "");
  return {
    q: String(data.get("q") ?? ""),
    fw: String(data.get("fw") ?? ""),
    tag: String(data.get("tag") ?? ""),
    ...((online === "true" || online === "false") && { online }),
  };
}

function firstPage(): void {
  filters = readFilters();
  cursors = [undefined];
  void refresh();
}

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

/** Forgets the shown device and page, and drops answers still on their way. */
function clearView(): void {
  window.clearTimeout(timer);
  generation++;
  chart?.destroy();
  chart = undefined;
  selected = undefined;
  chartCard.hidden = true;
  cursors = [undefined];
}

function showLogin(message?: string): void {
  clearView();
  appView.hidden = true;
  logoutButton.hidden = true;
  orgSwitcher.hidden = true;
  signedInAs.textContent = "";
  loginView.hidden = false;
  loginError.hidden = message === undefined;
  loginError.textContent = message ?? "";
}

function showOrganizations(session: Session): void {
  orgSwitcher.hidden = session.organizations.length < 2;
  orgSelect.replaceChildren(
    ...session.organizations.map((organization) => new Option(organization.name, organization.tenantId)),
  );
  orgSelect.value = session.tenantId;
}

/** One line per invitation waiting for the user, with Accept and Decline. */
async function showInvitations(session: Session): Promise<void> {
  const invitations = await listInvitations().catch(() => []);
  invitationList.replaceChildren(
    ...invitations.map((invitation) => {
      const item = document.createElement("li");
      item.dataset.invitationId = invitation.invitationId;
      const text = document.createElement("span");
      text.textContent = `${invitation.invitedBy} invites you to ${invitation.organization.name} as ${invitation.role}.`;
      const accept = document.createElement("button");
      accept.type = "button";
      accept.textContent = "Accept";
      accept.dataset.testid = "invitation-accept";
      accept.addEventListener("click", () => {
        accept.disabled = true;
        acceptInvitation(invitation.invitationId, session.tenantId).then(showApp, (error: unknown) => {
          if (error instanceof SignedOut) return showLogin("Your session ended; please sign in again.");
          showStatus(error instanceof Error ? `Cannot accept: ${error.message}` : "Cannot accept");
          accept.disabled = false;
        });
      });
      const decline = document.createElement("button");
      decline.type = "button";
      decline.textContent = "Decline";
      decline.dataset.testid = "invitation-decline";
      decline.addEventListener("click", () => {
        declineInvitation(invitation.invitationId).finally(() => void showInvitations(session));
      });
      item.append(text, accept, decline);
      return item;
    }),
  );
  invitationList.hidden = invitations.length === 0;
}

function showApp(session: Session): void {
  loginView.hidden = true;
  appView.hidden = false;
  logoutButton.hidden = false;
  signedInAs.textContent = session.email;
  showOrganizations(session);
  void showInvitations(session);
  void refresh();
}

async function refresh(): Promise<void> {
  window.clearTimeout(timer);
  const current = ++generation;
  try {
    const now = Date.now();
    const shown = selected;
    const [devices, device, history] = await Promise.all([
      listDevices(filters, cursors.at(-1)),
      shown ? getDevice(shown) : undefined,
      shown ? lastHour(shown, now) : undefined,
    ]);
    if (current !== generation) return;
    table.render(devices.items, now);
    table.select(selected);
    nextCursor = devices.nextCursor;
    nextButton.disabled = nextCursor === null;
    prevButton.disabled = cursors.length <= 1;
    pageNumber.textContent = `Page ${cursors.length}`;
    if (device && device.deviceId === selected) detail.render(device, now);
    if (history && history.deviceId === selected) await chart?.show(history);
    showStatus(undefined);
  } catch (error) {
    if (current !== generation) return;
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
      showApp(session);
    },
    (error: unknown) => {
      const message =
        error instanceof ApiError && error.code === "login_failed" ? "Wrong email or password." : String(error);
      showLogin(error instanceof ApiError ? (error.code === "login_failed" ? message : error.message) : message);
    },
  );
});

filterForm.addEventListener("input", () => {
  window.clearTimeout(filterTimer);
  filterTimer = window.setTimeout(firstPage, FILTER_DELAY_MS);
});
filterForm.addEventListener("submit", (event) => {
  event.preventDefault();
  window.clearTimeout(filterTimer);
  firstPage();
});

nextButton.addEventListener("click", () => {
  if (nextCursor === null) return;
  cursors.push(nextCursor);
  void refresh();
});
prevButton.addEventListener("click", () => {
  if (cursors.length <= 1) return;
  cursors.pop();
  void refresh();
});

orgSelect.addEventListener("change", () => {
  const previous = savedSession()?.tenantId;
  clearView();
  orgSelect.disabled = true;
  switchOrganization(orgSelect.value)
    .then(
      (session) => {
        // Filters name tags and firmware of the organization left behind.
        filterForm.reset();
        filters = {};
        showApp(session);
      },
      (error: unknown) => {
        if (error instanceof SignedOut) return showLogin("Your session ended; please sign in again.");
        if (previous !== undefined) orgSelect.value = previous;
        showStatus(error instanceof Error ? `Cannot switch: ${error.message}` : "Cannot switch");
        void refresh();
      },
    )
    .finally(() => {
      orgSelect.disabled = false;
    });
});

logoutButton.addEventListener("click", () => {
  logout().finally(() => showLogin());
});

const session = savedSession();
if (session) showApp(session);
else showLogin();
