// Every /api route, called as every role and every API key scope: refused callers get 403, allowed
// ones get through, and an allowed caller asking for another organization's ids gets 404. Routes
// are collected from the app, so routes added later are covered without touching this file.

import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { after, before, describe, test } from "node:test";
import { buildEsp32Image } from "@kestrel/wire/esp32-image";
import type { LightMyRequestResponse } from "fastify";
import { type AlertDoc, alertId } from "../src/alerts/alert-store.ts";
import { nodeSha256 } from "../src/artifacts/validators.ts";
import type { ApiRoute } from "../src/auth/access.ts";
import { permissionTable } from "../src/auth/permission-table.ts";
import {
  type Permission,
  ROLES,
  type Role,
  roleAllows,
  SCOPES,
  type Scope,
  scopesAllow,
  scopesAllowGateway,
} from "../src/auth/permissions.ts";
import { SessionStore } from "../src/auth/session-store.ts";
import { REPO_ROOT } from "../src/config.ts";
import { ExportRunStore, runId } from "../src/exports/run-store.ts";
import { KeyStore } from "../src/keys/key-store.ts";
import type { Credentials } from "../src/tenants/bootstrap.ts";
import { InvitationStore } from "../src/tenants/invitation-store.ts";
import { memberIdOf } from "../src/tenants/membership-store.ts";
import { type DeliveryDoc, deliveryId } from "../src/webhooks/delivery-store.ts";
import { addMember, bearer, bootstrapTenant, login, startTestCloud, type TestCloud } from "./helpers.ts";

type Caller = { kind: "role"; role: Role } | { kind: "key"; scope: Scope; secret: string } | { kind: "gateway" };

interface Examples {
  examples?: unknown[];
}

const EXAMPLE_DEVICES = ["sim-001", "sim-002"];
/** The problem codes of the access hook (auth/access.ts). */
const ACCESS_REFUSALS: unknown[] = ["unauthenticated", "gateway_auth_failed", "forbidden"];

function example(schema: unknown): Record<string, unknown> | undefined {
  const examples = (schema as Examples | undefined)?.examples;
  return examples?.[0] as Record<string, unknown> | undefined;
}

function describeCaller(caller: Caller): string {
  if (caller.kind === "role") return `role ${caller.role}`;
  if (caller.kind === "key") return `key ${caller.scope}`;
  return "gateway key";
}

function schemaParts(route: ApiRoute): Record<"params" | "querystring" | "body", unknown> {
  const schema = (route.schema ?? {}) as Record<string, unknown>;
  return { params: schema.params, querystring: schema.querystring, body: schema.body };
}

function pathWith(url: string, params: Record<string, unknown>): string {
  return url.replace(/:([A-Za-z0-9_]+)/g, (_, name: string) => encodeURIComponent(String(params[name])));
}

function queryString(query: Record<string, unknown> | undefined): string {
  if (!query) return "";
  const search = new URLSearchParams();
  for (const [name, value] of Object.entries(query)) {
    for (const item of [value].flat()) search.append(name, String(item));
  }
  return `?${search}`;
}

describe("permission matrix over every /api route", () => {
  let cloud: TestCloud;
  let acme: Credentials;
  let globex: Credentials;
  let sessions: SessionStore;
  const keys = new Map<Scope, string>();
  /** For each path parameter name: the id of a resource of that kind in another organization (Globex). */
  const otherOrgIds = new Map<string, string>();

  before(async () => {
    cloud = await startTestCloud();
    acme = await bootstrapTenant(cloud.db, "Acme", EXAMPLE_DEVICES);
    globex = await bootstrapTenant(cloud.db, "Globex", ["gx-1"]);
    sessions = new SessionStore(cloud.db, 3600);
    for (const role of ROLES) await addMember(cloud.db, acme.tenantId, `${role}@matrix.test`, role);
    const keyStore = new KeyStore(cloud.db);
    for (const scope of SCOPES) {
      const { secret } = await keyStore.create(acme.tenantId, {
        name: scope,
        scopes: [scope],
        expiresAt: null,
        createdBy: "test",
      });
      keys.set(scope, secret);
    }

    const globexAdmin = await login(cloud.app, globex.admin.email);
    const command = await cloud.app.inject({
      method: "POST",
      url: "/api/devices/gx-1/commands",
      headers: bearer(globexAdmin),
      payload: { name: "ping" },
    });
    assert.equal(command.statusCode, 202, command.body);
    const globexKey = await keyStore.create(globex.tenantId, {
      name: "g",
      scopes: ["read"],
      expiresAt: null,
      createdBy: "test",
    });
    const scheduleRoute = cloud.app.apiRoutes.find((r) => r.method === "POST" && r.url === "/api/exports/schedules");
    const schedule = await cloud.app.inject({
      method: "POST",
      url: "/api/exports/schedules",
      headers: bearer(globexAdmin),
      payload: example(scheduleRoute ? schemaParts(scheduleRoute).body : undefined) ?? {},
    });
    assert.equal(schedule.statusCode, 201, schedule.body);
    const scheduleId = schedule.json<{ scheduleId: string }>().scheduleId;
    const tick = Date.parse("2026-01-01T06:00:00Z");
    const run = await new ExportRunStore(cloud.db).claim(
      {
        _id: runId(scheduleId, tick),
        tenantId: globex.tenantId,
        scheduleId,
        tick: new Date(tick),
        attempt: 1,
        from: new Date(tick - 86_400_000),
        to: new Date(tick),
        format: "csv",
        destination: "download",
      },
      new Date(tick),
      new Date(Date.now() + 3_600_000),
    );
    assert.ok(run);
    otherOrgIds.set("scheduleId", scheduleId);
    otherOrgIds.set("runId", run._id);
    otherOrgIds.set("deviceId", "gx-1");
    otherOrgIds.set("commandId", command.json<{ id: string }>().id);
    otherOrgIds.set("memberId", memberIdOf(globex.admin.email));
    const invitation = await new InvitationStore(cloud.db).create(
      globex.tenantId,
      "invitee@globex.test",
      "user",
      "test",
    );
    otherOrgIds.set("invitationId", invitation.doc._id);
    otherOrgIds.set("keyId", globexKey.doc.keyId);
    const endpoint = await cloud.app.inject({
      method: "POST",
      url: "/api/webhooks/endpoints",
      headers: bearer(globexAdmin),
      payload: { url: "https://partner.example.com/globex", events: ["command.done"] },
    });
    assert.equal(endpoint.statusCode, 201, endpoint.body);
    const endpointId = endpoint.json<{ endpointId: string }>().endpointId;
    const delivery = deliveryId(endpointId, "evt_globex");
    // A finished delivery, straight into the log: nothing is queued to an address outside this machine.
    await cloud.db.collection<DeliveryDoc>("webhook_deliveries").insertOne({
      _id: delivery,
      tenantId: globex.tenantId,
      endpointId,
      eventId: "evt_globex",
      eventType: "command.done",
      body: "{}",
      createdAt: Date.now(),
      status: "succeeded",
      attempts: [],
      nextAttemptAt: null,
      succeededAt: Date.now(),
      deadAt: null,
      deadReason: null,
    });
    otherOrgIds.set("endpointId", endpointId);
    const alertRule = await cloud.app.inject({
      method: "POST",
      url: "/api/alerts/rules",
      headers: bearer(globexAdmin),
      payload: { name: "Globex", condition: { kind: "safe_mode" } },
    });
    assert.equal(alertRule.statusCode, 201, alertRule.body);
    const ruleId = alertRule.json<{ ruleId: string }>().ruleId;
    const alert = alertId(ruleId, "gx-1", 1);
    await cloud.db.collection<AlertDoc>("alerts").insertOne({
      _id: alert,
      tenantId: globex.tenantId,
      ruleId,
      ruleName: "Globex",
      kind: "safe_mode",
      severity: "warning",
      subject: "gx-1",
      deviceId: "gx-1",
      metric: null,
      silenced: false,
      firedAt: Date.now(),
      value: 1,
      resolvedAt: null,
      resolvedValue: null,
    });
    const silence = await cloud.app.inject({
      method: "POST",
      url: "/api/alerts/silences",
      headers: bearer(globexAdmin),
      payload: { deviceId: "gx-1", endsAt: Date.now() + 3_600_000 },
    });
    assert.equal(silence.statusCode, 201, silence.body);
    otherOrgIds.set("ruleId", ruleId);
    otherOrgIds.set("alertId", alert);
    otherOrgIds.set("silenceId", silence.json<{ silenceId: string }>().silenceId);
    otherOrgIds.set("deliveryId", delivery);
    const globexSigningKey = await cloud.app.inject({
      method: "POST",
      url: "/api/signing/keys",
      headers: bearer(globexAdmin),
    });
    assert.equal(globexSigningKey.statusCode, 201, globexSigningKey.body);
    otherOrgIds.set("signingKeyId", globexSigningKey.json().key.keyId);
    const globexImage = buildEsp32Image({ chip: "esp32", version: "9.9.9", projectName: "globex" }, nodeSha256);
    const artifact = await cloud.app.inject({
      method: "POST",
      url: "/api/artifacts?kind=firmware&name=globex-fw&chip=esp32",
      headers: { ...bearer(globexAdmin), "content-type": "application/octet-stream" },
      payload: Buffer.from(globexImage),
    });
    assert.equal(artifact.statusCode, 201, artifact.body);
    otherOrgIds.set("artifactId", artifact.json().artifactId);
    otherOrgIds.set("sha256", artifact.json().sha256);
    const signature = await cloud.app.inject({
      method: "POST",
      url: `/api/artifacts/${artifact.json().artifactId}/signatures`,
      headers: bearer(globexAdmin),
    });
    assert.equal(signature.statusCode, 201, signature.body);
    const campaign = await cloud.app.inject({
      method: "POST",
      url: "/api/campaigns",
      headers: bearer(globexAdmin),
      payload: { name: "globex", artifactId: artifact.json().artifactId, target: { devices: ["gx-1"] } },
    });
    assert.equal(campaign.statusCode, 201, campaign.body);
    otherOrgIds.set("campaignId", campaign.json().campaignId);
  });
  after(() => cloud?.close());

  /** A fresh credential per call: some routes (logout, switch) end the session they are called with. */
  async function token(caller: Caller): Promise<string> {
    if (caller.kind === "key") return caller.secret;
    if (caller.kind === "gateway") return acme.gatewayKey;
    const session = await sessions.issue({
      email: `${caller.role}@matrix.test`,
      tenantId: acme.tenantId,
      role: caller.role,
    });
    return session.token;
  }

  async function call(route: ApiRoute, caller: Caller | null, params?: Record<string, unknown>) {
    const parts = schemaParts(route);
    const url = pathWith(route.url, params ?? example(parts.params) ?? {}) + queryString(example(parts.querystring));
    const body = example(parts.body);
    return cloud.app.inject({
      method: route.method as "GET",
      url,
      headers: caller ? bearer(await token(caller)) : {},
      ...(body ? { payload: body } : {}),
    });
  }

  function callers(): Caller[] {
    return [
      ...ROLES.map((role): Caller => ({ kind: "role", role })),
      ...SCOPES.map((scope): Caller => ({ kind: "key", scope, secret: keys.get(scope) ?? "" })),
      { kind: "gateway" },
    ];
  }

  function allowed(route: ApiRoute, caller: Caller): boolean {
    if (route.config.gateway)
      return caller.kind === "gateway" || (caller.kind === "key" && scopesAllowGateway([caller.scope]));
    const permission = route.config.permission as Permission;
    if (caller.kind === "role") return roleAllows(caller.role, permission);
    if (caller.kind === "key") return scopesAllow([caller.scope], permission);
    return false;
  }

  /** Let through by access control: a 401/403 may still come from the handler itself (a wrong device token). */
  function assertAllowed(response: LightMyRequestResponse, what: string): void {
    const problem = String(response.headers["content-type"]).startsWith("application/problem+json");
    const code = problem ? response.json<{ code: string }>().code : undefined;
    assert.ok(
      !ACCESS_REFUSALS.includes(code) && response.statusCode !== 400 && response.statusCode < 500,
      `${what}: expected to be let through with a valid example, got ${response.statusCode} ${response.body}`,
    );
  }

  test("docs/permissions.md shows exactly the PERMISSIONS matrix", async () => {
    const page = await readFile(`${REPO_ROOT}docs/permissions.md`, "utf8");
    const table = /<!-- permission-table:start -->\n([\s\S]*?)\n<!-- permission-table:end -->/.exec(page)?.[1];
    assert.equal(table, permissionTable(), "regenerate the table in docs/permissions.md (see the page's last section)");
  });

  test("every route's params, query and body schemas carry examples", () => {
    const missing = cloud.app.apiRoutes.flatMap((route) =>
      Object.entries(schemaParts(route))
        .filter(([, schema]) => schema !== undefined && example(schema) === undefined)
        .map(([part]) => `${route.method} ${route.url} ${part}`),
    );
    assert.deepEqual(missing, [], "add `examples: [...]` to these schemas");
  });

  test("every path parameter has an other-organization fixture in this test", () => {
    const params = new Set(
      cloud.app.apiRoutes.flatMap((route) => [...route.url.matchAll(/:([A-Za-z0-9_]+)/g)].map((m) => m[1] ?? "")),
    );
    const missing = [...params].filter((name) => !otherOrgIds.has(name));
    assert.deepEqual(missing, [], "add a fixture creating such a resource in Globex to otherOrgIds");
  });

  test("each caller is refused (403) or let through exactly as the matrix says; no credentials is 401", async () => {
    const routes = cloud.app.apiRoutes.filter((route) => !route.config.public);
    assert.ok(routes.length >= 10, "the routes were collected");
    for (const route of routes) {
      const name = `${route.method} ${route.url}`;
      const anonymous = await call(route, null);
      assert.equal(anonymous.statusCode, 401, `${name} without credentials`);
      // Refused callers first: they must change nothing, so the allowed calls below see the same state.
      const ordered = callers().sort((a, b) => Number(allowed(route, a)) - Number(allowed(route, b)));
      for (const caller of ordered) {
        const response = await call(route, caller);
        const what = `${name} as ${describeCaller(caller)}`;
        if (allowed(route, caller)) assertAllowed(response, what);
        else {
          assert.equal(response.statusCode, 403, `${what}: ${response.body}`);
          assert.equal(response.json().code, "forbidden", what);
        }
      }
    }
  });

  test("an allowed caller gets 404 for another organization's ids", async () => {
    const routes = cloud.app.apiRoutes.filter((route) => !route.config.public && route.url.includes(":"));
    assert.ok(routes.length > 0);
    for (const route of routes) {
      const params = { ...example(schemaParts(route).params), ...Object.fromEntries(otherOrgIds) };
      for (const caller of callers().filter((candidate) => allowed(route, candidate))) {
        const response = await call(route, caller, params);
        assert.equal(
          response.statusCode,
          404,
          `${route.method} ${pathWith(route.url, params)} as ${describeCaller(caller)}: ${response.body}`,
        );
      }
    }
  });
});
