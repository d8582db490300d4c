// Request limits on the whole API (@fastify/rate-limit), per minute: per credential (the bearer
// token's hash, so one session or key cannot starve the others), per client address for calls
// without credentials (login, invitations, health), and a higher one per gateway key (ingest and
// command polls are the bulk of the traffic). A token counts as a credential only once it has been
// accepted: until then its requests count against the client's address, so inventing tokens buys
// no budget. Counters live in each replica's memory, so with N replicas behind a balancer a client
// gets up to N times the limit. Over the limit: 429 with Retry-After, a problem like every other error.

import rateLimit from "@fastify/rate-limit";
import type { FastifyInstance, FastifyRequest } from "fastify";
import fp from "fastify-plugin";
import { secretHash } from "../auth/secrets.ts";
import type { RateLimits } from "../config.ts";
import { bearerToken } from "./bearer.ts";
import { Problem } from "./problem.ts";

const API_PREFIX = "/api/";
/** Accepted tokens remembered (by hash) for choosing the budget; the oldest are forgotten first. */
const KNOWN_CREDENTIALS = 50_000;
const KNOWN_FOR_MS = 10 * 60_000;

async function requestLimits(app: FastifyInstance, limits: RateLimits): Promise<void> {
  const known = new Map<string, number>();
  const tokenKey = (request: FastifyRequest) => {
    const token = bearerToken(request);
    return token === undefined ? undefined : secretHash(token).slice(0, 32);
  };

  const limitKey = (request: FastifyRequest): string => {
    const hash = tokenKey(request);
    if (hash === undefined || (known.get(hash) ?? 0) <= Date.now()) return `client:${request.ip}`;
    return `${request.routeOptions.config.gateway === true ? "gateway" : "credential"}:${hash}`;
  };

  app.addHook("onResponse", async (request) => {
    const hash = request.principal ? tokenKey(request) : undefined;
    if (hash === undefined) return;
    known.delete(hash);
    known.set(hash, Date.now() + KNOWN_FOR_MS);
    if (known.size > KNOWN_CREDENTIALS) known.delete(known.keys().next().value as string);
  });

  // Not per route (global: true adds route-level hooks, which run after the access check's 401s):
  // one app-level hook, ahead of everything registered after this plugin.
  await app.register(rateLimit, { global: false });
  const limited = app.rateLimit({
    timeWindow: 60_000,
    keyGenerator: limitKey,
    max: (_request, key) =>
      key.startsWith("gateway:")
        ? limits.perGateway
        : key.startsWith("credential:")
          ? limits.perCredential
          : limits.perAnonymousClient,
    // The dashboard's files and the API documentation are not the API.
    allowList: (request) => !request.url.startsWith(API_PREFIX),
    errorResponseBuilder: (_request, context) =>
      new Problem(429, "rate_limited", `more than ${context.max} requests a minute; retry in ${context.after}`),
  });
  app.addHook("onRequest", limited);
}

export const rateLimitPlugin = fp(requestLimits, { name: "rate-limit" });
