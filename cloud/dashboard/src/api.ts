// The dashboard's client for the cloud API. Answer types come from the
// server's own schema modules; the session token lives in sessionStorage.

import type { LoginAnswer, OrganizationRef } from "../../src/auth/auth-schema.ts";
import type { DeviceList, DeviceListQuery, DeviceView } from "../../src/devices/device-view.ts";
import type { ProblemDetails } from "../../src/http/problem-schema.ts";
import type { HistoryAnswer } from "../../src/telemetry/history-schema.ts";
import type { ReceivedInvitation } from "../../src/tenants/org-schema.ts";

const SESSION_KEY = "kestrel.session";

export interface Session {
  token: string;
  email: string;
  /** The organization the session is bound to. */
  tenantId: string;
  /** Every organization the user may switch to. */
  organizations: OrganizationRef[];
}

/** The session is gone or was never there: show the login form. */
export class SignedOut extends Error {}

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

export function savedSession(): Session | undefined {
  const raw = sessionStorage.getItem(SESSION_KEY);
  if (!raw) return undefined;
  try {
    const session = JSON.parse(raw) as Partial<Session>;
    if (
      typeof session.token === "string" &&
      typeof session.email === "string" &&
      typeof session.tenantId === "string" &&
      Array.isArray(session.organizations)
    ) {
      return {
        token: session.token,
        email: session.email,
        tenantId: session.tenantId,
        organizations: session.organizations,
      };
    }
  } catch {
    // A corrupt entry is dropped below.
  }
  sessionStorage.removeItem(SESSION_KEY);
  return undefined;
}

async function request<T>(method: string, path: string, body?: unknown): Promise<T> {
  const session = savedSession();
  const headers: Record<string, string> = {};
  if (session) headers.authorization = `Bearer ${session.token}`;
  if (body !== undefined) headers["content-type"] = "application/json";
  const response = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (response.status === 204) return undefined as T;
  const payload: unknown = await response.json().catch(() => undefined);
  if (response.ok) return payload as T;
  const problem = (payload ?? {}) as Partial<ProblemDetails>;
  if (response.status === 401 && path !== "/api/auth/login") {
    // An answer to a token a switch has since replaced must not sign the new session out.
    if (savedSession()?.token === session?.token) sessionStorage.removeItem(SESSION_KEY);
    throw new SignedOut(problem.detail ?? "signed out");
  }
  throw new ApiError(response.status, problem.code ?? `http_${response.status}`, problem.detail ?? response.statusText);
}

function keep(answer: LoginAnswer): Session {
  const session: Session = {
    token: answer.token,
    email: answer.user.email,
    tenantId: answer.user.tenantId,
    organizations: answer.organizations,
  };
  sessionStorage.setItem(SESSION_KEY, JSON.stringify(session));
  return session;
}

export async function login(email: string, password: string): Promise<Session> {
  return keep(await request<LoginAnswer>("POST", "/api/auth/login", { email, password }));
}

/** Replaces the session by one bound to another of the user's organizations. */
export async function switchOrganization(tenantId: string): Promise<Session> {
  return keep(await request<LoginAnswer>("POST", "/api/auth/switch", { organization: tenantId }));
}

/** Invitations to other organizations waiting for the signed-in user. */
export async function listInvitations(): Promise<ReceivedInvitation[]> {
  return (await request<{ items: ReceivedInvitation[] }>("GET", "/api/auth/invitations")).items;
}

/**
 * Joins the invitation's organization, then renews the session in the current one, whose answer
 * lists the organizations the user may switch to, the new one included.
 */
export async function acceptInvitation(invitationId: string, current: string): Promise<Session> {
  await request<unknown>("POST", `/api/auth/invitations/${encodeURIComponent(invitationId)}/accept`);
  return switchOrganization(current);
}

export async function declineInvitation(invitationId: string): Promise<void> {
  await request<void>("DELETE", `/api/auth/invitations/${encodeURIComponent(invitationId)}`);
}

export async function logout(): Promise<void> {
  try {
    await request<void>("POST", "/api/auth/logout");
  } finally {
    sessionStorage.removeItem(SESSION_KEY);
  }
}

/** What the device list's filter bar asks for; empty fields are left out of the query. */
export type DeviceFilters = Pick<DeviceListQuery, "q" | "online" | "fw" | "tag">;

export const PAGE_SIZE = 25;

export function listDevices(filters: DeviceFilters, cursor: string | undefined): Promise<DeviceList> {
  const query = new URLSearchParams({ limit: String(PAGE_SIZE) });
  for (const [name, value] of Object.entries(filters)) {
    if (typeof value === "string" && value.trim() !== "") query.set(name, value.trim());
  }
  if (cursor) query.set("cursor", cursor);
  return request<DeviceList>("GET", `/api/devices?${query}`);
}

export function getDevice(deviceId: string): Promise<DeviceView> {
  return request<DeviceView>("GET", `/api/devices/${encodeURIComponent(deviceId)}`);
}

export function lastHour(deviceId: string, now: number): Promise<HistoryAnswer> {
  const query = new URLSearchParams({
    from: String(now - 3_600_000),
    to: String(now),
    metrics: "temperature,pressure",
    resolution: "auto",
  });
  return request<HistoryAnswer>("GET", `/api/devices/${encodeURIComponent(deviceId)}/telemetry?${query}`);
}
