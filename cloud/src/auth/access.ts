// Access control in one place. Every /api route declares how it is reached: a permission of the
// matrix (permissions.ts), `public`, or `gateway` (a site gateway's key). One onRequest hook
// authenticates the caller, checks the permission and records the principal; handlers then take
// the organization from `orgOf(request)` and scope every query by it.

import type { FastifyInstance, FastifyRequest, RouteOptions } from "fastify";
import fp from "fastify-plugin";
import type { Db } from "mongodb";
import { GatewayKeyStore } from "../gateway/gateway-key-store.ts";
import { bearerToken } from "../http/bearer.ts";
import { Problem } from "../http/problem.ts";
import { isPermission, type Permission, type Role, roleAllows, type Scope, scopesAllow } from "./permissions.ts";
import { SessionStore } from "./session-store.ts";

declare module "fastify" {
  interface FastifyContextConfig {
    /** What the caller must be allowed to do in its organization. */
    permission?: Permission;
    /** Reachable without credentials (login, health). */
    public?: boolean;
    /** Reachable with a site gateway's key only. */
    gateway?: boolean;
  }
  interface FastifyRequest {
    principal: Principal | null;
  }
}

/** Who is calling, always within exactly one organization (tenant). */
export type Principal =
  | { kind: "user"; email: string; tenantId: string; role: Role }
  | { kind: "apiKey"; keyId: string; tenantId: string; scopes: readonly Scope[] }
  | { kind: "gateway"; tenantId: string };

/** Resolves a bearer token to an operator principal (a session, or later an API key), or undefined. */
export type OperatorResolver = (token: string) => Promise<Principal | undefined>;

export interface AccessOptions {
  db: Db;
  sessionTtlSeconds: number;
}

const API_PREFIX = "/api/";

export function principalOf(request: FastifyRequest): Principal {
  if (!request.principal) throw new Problem(401, "unauthenticated", "credentials are required");
  return request.principal;
}

/** The organization every query of this request must be scoped by. */
export function orgOf(request: FastifyRequest): string {
  return principalOf(request).tenantId;
}

function declaredModes(config: RouteOptions["config"]): string[] {
  const modes: string[] = [];
  if (config?.permission !== undefined) modes.push("permission");
  if (config?.public === true) modes.push("public");
  if (config?.gateway === true) modes.push("gateway");
  return modes;
}

function allows(principal: Principal, permission: Permission): boolean {
  switch (principal.kind) {
    case "user":
      return roleAllows(principal.role, permission);
    case "apiKey":
      return scopesAllow(principal.scopes, permission);
    case "gateway":
      return false;
  }
}

async function access(app: FastifyInstance, options: AccessOptions): Promise<void> {
  const sessions = new SessionStore(options.db, options.sessionTtlSeconds);
  const gatewayKeys = new GatewayKeyStore(options.db);
  const resolvers: OperatorResolver[] = [
    async (token) => {
      const user = await sessions.resolve(token);
      return user && { kind: "user", ...user };
    },
  ];

  app.decorateRequest("principal", null);
  app.decorate("addOperatorResolver", (resolver: OperatorResolver) => {
    resolvers.push(resolver);
  });

  // A route that forgets to say who may call it fails at start-up, not in production.
  app.addHook("onRoute", (route) => {
    if (!route.url.startsWith(API_PREFIX)) return;
    const modes = declaredModes(route.config);
    if (modes.length !== 1) {
      throw new Error(`${route.method} ${route.url} must declare exactly one of permission, public, gateway`);
    }
    if (route.config?.permission !== undefined && !isPermission(route.config.permission)) {
      throw new Error(`${route.method} ${route.url}: unknown permission ${String(route.config.permission)}`);
    }
  });

  app.addHook("onRequest", async (request) => {
    const config = request.routeOptions.config;
    if (!request.routeOptions.url?.startsWith(API_PREFIX) || config.public === true) return;
    const token = bearerToken(request);
    if (config.gateway === true) {
      const tenantId = token ? await gatewayKeys.tenantOf(token) : undefined;
      if (!tenantId) {
        request.log.warn("gateway key missing or unknown");
        throw new Problem(401, "gateway_auth_failed", "a valid gateway key is required", {
          "www-authenticate": "Bearer",
        });
      }
      request.principal = { kind: "gateway", tenantId };
      return;
    }
    const permission = config.permission;
    if (permission === undefined) throw new Problem(404, "not_found", "no such route");
    let principal: Principal | undefined;
    if (token) {
      for (const resolve of resolvers) {
        principal = await resolve(token);
        if (principal) break;
      }
    }
    if (!principal) {
      throw new Problem(401, "unauthenticated", "a valid session token or API key is required", {
        "www-authenticate": "Bearer",
      });
    }
    if (!allows(principal, permission)) {
      request.log.warn({ tenantId: principal.tenantId, kind: principal.kind, permission }, "access refused");
      throw new Problem(403, "forbidden", `this role or key may not ${permission.replace(":", " ")}`);
    }
    request.principal = principal;
  });
}

declare module "fastify" {
  interface FastifyInstance {
    /** Adds a way to turn a bearer token into an operator principal (API keys use this). */
    addOperatorResolver(resolver: OperatorResolver): void;
  }
}

export const accessPlugin = fp(access, { name: "access" });
