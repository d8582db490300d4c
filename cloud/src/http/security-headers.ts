// Response headers every answer carries, from @fastify/helmet: nosniff, no framing, no referrer,
// HSTS, and a Content-Security-Policy that allows nothing (API answers are data, never a page; the
// dashboard and Swagger UI set their own, looser ones). API answers may hold secrets (a login's
// token, a new API key, device tokens), so none of them is stored by a cache.

import helmet from "@fastify/helmet";
import type { FastifyInstance } from "fastify";
import fp from "fastify-plugin";

const API_PREFIX = "/api/";

async function securityHeaders(app: FastifyInstance): Promise<void> {
  await app.register(helmet, {
    global: true,
    contentSecurityPolicy: {
      useDefaults: false,
      directives: { defaultSrc: ["'none'"], frameAncestors: ["'none'"], baseUri: ["'none'"], formAction: ["'none'"] },
    },
    referrerPolicy: { policy: "no-referrer" },
  });
  app.addHook("onRequest", async (request, reply) => {
    if (request.url.startsWith(API_PREFIX)) reply.header("cache-control", "no-store");
  });
}

export const securityHeadersPlugin = fp(securityHeaders, { name: "security-headers" });
