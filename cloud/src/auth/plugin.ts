// Operator authentication: password login issuing a session bound to one organization, switching
// the session to another organization of the user, logout, and who am I. Checking credentials on
// every other route is access.ts's job.

import type { FastifyInstance, FastifyRequest } from "fastify";
import fp from "fastify-plugin";
import type { Db } from "mongodb";
import { bearerToken } from "../http/bearer.ts";
import { Problem, problemResponses } from "../http/problem.ts";
import { MembershipStore } from "../tenants/membership-store.ts";
import { principalOf } from "./access.ts";
import { type LoginAnswer, loginAnswerSchema, type SessionUser, userSchema } from "./auth-schema.ts";
import { LoginThrottle } from "./login-throttle.ts";
import { decoyHash, PASSWORD_MAX_LENGTH, verifyPassword } from "./passwords.ts";
import { SessionOpener } from "./session-opener.ts";
import { SessionStore } from "./session-store.ts";
import { normalizeEmail, UserStore } from "./user-store.ts";

export interface AuthOptions {
  db: Db;
  sessionTtlSeconds: number;
}

/** The signed-in user of a route, refusing callers that are not a user session (API keys). */
export function currentUser(request: FastifyRequest): SessionUser {
  const principal = principalOf(request);
  if (principal.kind !== "user") throw new Problem(403, "forbidden", "only a signed-in user may do this");
  return { email: principal.email, tenantId: principal.tenantId, role: principal.role };
}

/** An organization id as the API takes it (tenant ids are UUIDs). */
export const ORGANIZATION_ID = { type: "string", minLength: 1, maxLength: 64, pattern: "^[A-Za-z0-9-]+$" } as const;
const EXAMPLE_ORGANIZATION = "0b6f1c1e-8d1f-4a55-9a43-6f1b8c2d9e01";

interface LoginBody {
  email: string;
  password: string;
  organization?: string;
}

interface SwitchBody {
  organization: string;
}

function organizationNotFound(tenantId: string): Problem {
  return new Problem(404, "organization_not_found", `you are not a member of organization ${tenantId}`);
}

async function auth(app: FastifyInstance, options: AuthOptions): Promise<void> {
  const users = new UserStore(options.db);
  const sessions = new SessionStore(options.db, options.sessionTtlSeconds);
  const memberships = new MembershipStore(options.db);
  const throttle = new LoginThrottle(options.db);
  const opener = new SessionOpener(options.db, options.sessionTtlSeconds);
  const openSession = opener.open.bind(opener);

  app.post<{ Body: LoginBody }>(
    "/api/auth/login",
    {
      config: { public: true },
      schema: {
        summary: "Sign in; the session is bound to the given organization, or the user's first one",
        body: {
          type: "object",
          additionalProperties: false,
          required: ["email", "password"],
          properties: {
            email: { type: "string", minLength: 3, maxLength: 254 },
            password: { type: "string", minLength: 1, maxLength: PASSWORD_MAX_LENGTH },
            organization: ORGANIZATION_ID,
          },
          examples: [
            { email: "admin@kestrel.local", password: "correct horse battery staple" },
            {
              email: "admin@kestrel.local",
              password: "correct horse battery staple",
              organization: EXAMPLE_ORGANIZATION,
            },
          ],
        },
        response: {
          200: loginAnswerSchema,
          ...problemResponses(400, 401, 403, 404, 429),
        },
      },
    },
    async (request): Promise<LoginAnswer> => {
      const email = normalizeEmail(request.body.email);
      await throttle.assertMayTry(email, request.ip);
      const user = await users.findByEmail(email);
      const valid = await verifyPassword(request.body.password, user?.passwordHash ?? (await decoyHash()));
      if (!user || !valid) {
        await throttle.recordFailure(email, request.ip);
        request.log.warn({ email }, "login failed");
        throw new Problem(401, "login_failed", "wrong email or password");
      }
      await throttle.reset(email, request.ip);
      const all = await memberships.ofUser(email);
      const wanted = request.body.organization;
      const chosen = wanted === undefined ? all[0] : all.find((membership) => membership.tenantId === wanted);
      if (!chosen) {
        if (wanted !== undefined) throw organizationNotFound(wanted);
        throw new Problem(403, "no_organization", "this user belongs to no organization");
      }
      request.log.info({ email, tenantId: chosen.tenantId }, "login");
      return openSession(email, chosen, all);
    },
  );

  app.post<{ Body: SwitchBody }>(
    "/api/auth/switch",
    {
      config: { permission: "account:self" },
      schema: {
        summary: "Replace the session by one bound to another organization of the user",
        body: {
          type: "object",
          additionalProperties: false,
          required: ["organization"],
          properties: { organization: ORGANIZATION_ID },
          examples: [{ organization: EXAMPLE_ORGANIZATION }],
        },
        response: { 200: loginAnswerSchema, ...problemResponses(400, 401, 403, 404) },
      },
    },
    async (request): Promise<LoginAnswer> => {
      const { email } = currentUser(request);
      const all = await memberships.ofUser(email);
      const chosen = all.find((membership) => membership.tenantId === request.body.organization);
      if (!chosen) throw organizationNotFound(request.body.organization);
      const token = bearerToken(request);
      if (token) await sessions.revoke(token);
      request.log.info({ email, tenantId: chosen.tenantId }, "organization switch");
      return openSession(email, chosen, all);
    },
  );

  app.post(
    "/api/auth/logout",
    {
      config: { permission: "account:self" },
      schema: {
        summary: "End the session",
        response: { 204: { description: "The session is revoked.", type: "null" }, ...problemResponses(401, 403) },
      },
    },
    async (request, reply) => {
      const token = bearerToken(request);
      if (token) await sessions.revoke(token);
      return reply.code(204).send();
    },
  );

  app.get(
    "/api/auth/me",
    {
      config: { permission: "account:self" },
      schema: {
        summary: "The signed-in user, the session's organization and role",
        response: { 200: { description: "The session's user.", ...userSchema }, ...problemResponses(401, 403) },
      },
    },
    async (request) => currentUser(request),
  );
}

export const authPlugin = fp(auth, { name: "auth" });
