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
import {
  isPermission,
  type Permission,
  type Role,
  roleAllows,
  type Scope,
  scopesAllow,
  scopesAllowGateway,
} from "./permissions.ts";
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

/** An /api route as declared, for the OpenAPI document and the generic permission tests. */
export interface ApiRoute {
  method: string;
  url: string;
  config: NonNullable<RouteOptions["config"]>;
  schema: RouteOptions["schema"];
}

/** Who is calling, always within exactly one organization (tenant). */
export type Principal =
  | { kind: "user"; email: string; tenantId: string; role: Role }
  | { kind: "apiKey"; keyId: string; tenantId: string; scopes: readonly Scope[] }
  | { kind: "gateway"; tenantId: string };

/** Resolves a bearer token to an operator principal (a session or an API key), or undefined. */
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

/** Who did something, as records of it show it (createdBy, history). */
export function actorOf(principal: Principal): string {
  switch (principal.kind) {
    case "user":
      return principal.email;
    case "apiKey":
      return `key:${principal.keyId}`;
    case "gateway":
      return "gateway";
  }
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

  const apiRoutes: ApiRoute[] = [];
  const resolveOperator = async (token: string | undefined): Promise<Principal | undefined> => {
    if (!token) return undefined;
    for (const resolve of resolvers) {
      const principal = await resolve(token);
      if (principal) return principal;
    }
    return undefined;
  };

  app.decorateRequest("principal", null);
  app.decorate("addOperatorResolver", (resolver: OperatorResolver) => {
    resolvers.push(resolver);
  });
  app.decorate("apiRoutes", apiRoutes);

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
    for (const method of [route.method].flat()) {
      // Fastify adds a HEAD twin to every GET; it is the same route.
      if (method === "HEAD") continue;
      apiRoutes.push({ method, url: route.url, config: route.config ?? {}, schema: route.schema });
    }
  });

  /** A site gateway's key, or an API key with the ingest scope standing in for one. */
  async function gatewayPrincipal(request: FastifyRequest, token: string | undefined): Promise<Principal> {
    const tenantId = token ? await gatewayKeys.tenantOf(token) : undefined;
    if (tenantId) return { kind: "gateway", tenantId };
    const operator = await resolveOperator(token);
    if (operator?.kind === "apiKey" && scopesAllowGateway(operator.scopes)) {
      return { kind: "gateway", tenantId: operator.tenantId };
    }
    if (operator) {
      request.log.warn({ tenantId: operator.tenantId, kind: operator.kind }, "access refused: not a gateway");
      throw new Problem(403, "forbidden", "only a gateway key or an API key with the ingest scope may call this");
    }
    request.log.warn("gateway key missing or unknown");
    throw new Problem(401, "gateway_auth_failed", "a valid gateway key is required", {
      "www-authenticate": "Bearer",
    });
  }

  app.addHook("onRequest", async (request) => {
    const config = request.routeOptions.config;
    if (!request.routeOptions.url?.startsWith(API_PREFIX) || config.public === true) return;
    const token = bearerToken(request);
    if (config.gateway === true) {
      request.principal = await gatewayPrincipal(request, token);
      return;
    }
    const permission = config.permission;
    if (permission === undefined) throw new Problem(404, "not_found", "no such route");
    const principal = await resolveOperator(token);
    if (!principal && token && (await gatewayKeys.tenantOf(token))) {
      // A valid credential without the right: 403 like any other, not 401.
      throw new Problem(403, "forbidden", "a gateway key may only call the gateway API");
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
    /** Every /api route registered so far, as declared. */
    apiRoutes: readonly ApiRoute[];
  }
}

export const accessPlugin = fp(access, { name: "access" });
