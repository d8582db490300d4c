// Request limits on the whole API (@fastify/rate-limit), per minute: per credential (the bearer
// token's hash, so one session or key cannot starve the others), per client address for calls
// without credentials (login, invitations, health), and a higher one per gateway key (ingest and
// command polls are the bulk of the traffic). Counters live in each replica's memory, so with N
// replicas behind a balancer a client gets up to N times the limit. Over the limit: 429 with
// Retry-After, as a problem like every other error.

import rateLimit from "@fastify/rate-limit";
import type { FastifyInstance, FastifyRequest } from "fastify";
import fp from "fastify-plugin";
import { secretHash } from "../auth/secrets.ts";
import type { RateLimits } from "../config.ts";
import { bearerToken } from "./bearer.ts";
import { Problem } from "./problem.ts";

const API_PREFIX = "/api/";

function limitKey(request: FastifyRequest): string {
  const token = bearerToken(request);
  if (!token) return `client:${request.ip}`;
  const kind = request.routeOptions.config.gateway === true ? "gateway" : "credential";
  return `${kind}:${secretHash(token).slice(0, 32)}`;
}

async function requestLimits(app: FastifyInstance, limits: RateLimits): Promise<void> {
  await app.register(rateLimit, {
    global: true,
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
}

export const rateLimitPlugin = fp(requestLimits, { name: "rate-limit" });
