// Operator authentication: password login issuing bearer sessions, logout, and who am I.
// Checking credentials on every other route is access.ts's job.

import type { FastifyInstance, FastifyRequest } from "fastify";
import fp from "fastify-plugin";
import type { Db } from "mongodb";
import { bearerToken } from "../http/bearer.ts";
import { Problem, problemResponses } from "../http/problem.ts";
import { principalOf } from "./access.ts";
import { type LoginAnswer, loginAnswerSchema, type SessionUser, userSchema } from "./auth-schema.ts";
import { LoginThrottle } from "./login-throttle.ts";
import { decoyHash, PASSWORD_MAX_LENGTH, verifyPassword } from "./passwords.ts";
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

interface LoginBody {
  email: string;
  password: string;
}

async function auth(app: FastifyInstance, options: AuthOptions): Promise<void> {
  const users = new UserStore(options.db);
  const sessions = new SessionStore(options.db, options.sessionTtlSeconds);
  const throttle = new LoginThrottle(options.db);
  app.post<{ Body: LoginBody }>(
    "/api/auth/login",
    {
      config: { public: true },
      schema: {
        body: {
          type: "object",
          additionalProperties: false,
          required: ["email", "password"],
          properties: {
            email: { type: "string", minLength: 3, maxLength: 254 },
            password: { type: "string", minLength: 1, maxLength: PASSWORD_MAX_LENGTH },
          },
        },
        response: {
          200: loginAnswerSchema,
          ...problemResponses(400, 401, 429),
        },
      },
    },
    async (request): Promise<LoginAnswer> => {
      const email = normalizeEmail(request.body.email);
      const retryAfter = await throttle.retryAfter(email, request.ip);
      if (retryAfter > 0) {
        throw new Problem(429, "login_throttled", `too many failed logins; try again in ${retryAfter} s`, {
          "retry-after": String(retryAfter),
        });
      }
      const user = await users.findByEmail(email);
      const valid = await verifyPassword(request.body.password, user?.passwordHash ?? (await decoyHash()));
      if (!user || !valid) {
        await throttle.recordFailure(email, request.ip);
        request.log.warn({ email }, "login failed");
        throw new Problem(401, "login_failed", "wrong email or password");
      }
      await throttle.reset(email, request.ip);
      const sessionUser: SessionUser = { email: user._id, tenantId: user.tenantId, role: user.role };
      const session = await sessions.issue(sessionUser);
      request.log.info({ email, tenantId: user.tenantId }, "login");
      return { token: session.token, expiresAt: session.expiresAt.getTime(), user: sessionUser };
    },
  );

  app.post(
    "/api/auth/logout",
    { config: { permission: "org:read" }, schema: { response: { 204: { type: "null" }, ...problemResponses(401) } } },
    async (request, reply) => {
      const token = bearerToken(request);
      if (token) await sessions.revoke(token);
      return reply.code(204).send();
    },
  );

  app.get(
    "/api/auth/me",
    { config: { permission: "org:read" }, schema: { response: { 200: userSchema, ...problemResponses(401) } } },
    async (request) => currentUser(request),
  );
}

export const authPlugin = fp(auth, { name: "auth" });
