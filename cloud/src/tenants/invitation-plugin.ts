// The invitee's side of invitations (the admin's side is in org-plugin.ts): a signed-in user lists
// the invitations for their email and accepts or declines them; someone holding an invitation's
// token accepts it with a password, their account's, or a new one when the email has no account
// yet. Membership is never given without the user's consent.

import type { FastifyInstance } from "fastify";
import type { Db } from "mongodb";
import { loginAnswerSchema, organizationRefSchema } from "../auth/auth-schema.ts";
import { LoginThrottle } from "../auth/login-throttle.ts";
import { hashPassword, PASSWORD_MAX_LENGTH, PASSWORD_MIN_LENGTH, verifyPassword } from "../auth/passwords.ts";
import { currentUser } from "../auth/plugin.ts";
import { SessionOpener } from "../auth/session-opener.ts";
import { UserStore } from "../auth/user-store.ts";
import { Problem, problemResponses } from "../http/problem.ts";
import { INVITATION_TOKEN_PATTERN, type InvitationDoc, InvitationStore } from "./invitation-store.ts";
import { MembershipStore } from "./membership-store.ts";
import { invitationParamsSchema, type ReceivedInvitation, receivedInvitationListSchema } from "./org-schema.ts";
import { TenantStore } from "./tenant-store.ts";

export interface InvitationOptions {
  db: Db;
  sessionTtlSeconds: number;
}

interface InvitationParams {
  invitationId: string;
}

interface AcceptBody {
  token: string;
  password: string;
}

/** Throttles wrong tokens per client under one name, as wrong passwords are throttled per account. */
const UNKNOWN_TOKEN = "invitation-token";

function invitationNotFound(): Problem {
  return new Problem(404, "invitation_not_found", "no pending invitation with this id or token");
}

export async function invitationPlugin(app: FastifyInstance, options: InvitationOptions): Promise<void> {
  const invitations = new InvitationStore(options.db);
  const memberships = new MembershipStore(options.db);
  const tenants = new TenantStore(options.db);
  const users = new UserStore(options.db);
  const throttle = new LoginThrottle(options.db);
  const opener = new SessionOpener(options.db, options.sessionTtlSeconds);

  /** Makes the invitee a member (an existing membership keeps its role) and retires the invitation. */
  async function join(invitation: InvitationDoc): Promise<void> {
    await memberships.add(invitation.tenantId, invitation.email, invitation.role);
    await invitations.remove(invitation._id);
  }

  app.get(
    "/api/auth/invitations",
    {
      config: { permission: "account:self" },
      schema: {
        summary: "Invitations waiting for the signed-in user",
        response: { 200: receivedInvitationListSchema, ...problemResponses(401, 403) },
      },
    },
    async (request): Promise<{ items: ReceivedInvitation[] }> => {
      const items: ReceivedInvitation[] = [];
      for (const doc of await invitations.ofEmail(currentUser(request).email)) {
        const tenant = await tenants.find(doc.tenantId);
        if (!tenant) continue;
        items.push({
          invitationId: doc._id,
          organization: { tenantId: tenant._id, name: tenant.name },
          role: doc.role,
          invitedBy: doc.invitedBy,
          createdAt: doc.createdAt.getTime(),
          expiresAt: doc.expiresAt.getTime(),
        });
      }
      return { items };
    },
  );

  app.post<{ Params: InvitationParams }>(
    "/api/auth/invitations/:invitationId/accept",
    {
      config: { permission: "account:self" },
      schema: {
        summary: "Accept an invitation for the signed-in user; switch to the organization to use it",
        params: invitationParamsSchema,
        response: {
          200: { ...organizationRefSchema, description: "The organization joined, and the role there." },
          ...problemResponses(400, 401, 403, 404),
        },
      },
    },
    async (request) => {
      const { email } = currentUser(request);
      const invitation = await invitations.forEmail(request.params.invitationId, email);
      if (!invitation) throw invitationNotFound();
      await join(invitation);
      const [joined] = await opener.organizationsOf(
        (await memberships.ofUser(email)).filter((m) => m.tenantId === invitation.tenantId),
      );
      if (!joined) throw new Problem(404, "organization_not_found", "the organization no longer exists");
      request.log.info({ tenantId: invitation.tenantId, invitationId: invitation._id }, "invitation accepted");
      return joined;
    },
  );

  app.delete<{ Params: InvitationParams }>(
    "/api/auth/invitations/:invitationId",
    {
      config: { permission: "account:self" },
      schema: {
        summary: "Decline an invitation for the signed-in user",
        params: invitationParamsSchema,
        response: {
          204: { description: "The invitation is declined.", type: "null" },
          ...problemResponses(400, 401, 403, 404),
        },
      },
    },
    async (request, reply) => {
      const invitation = await invitations.forEmail(request.params.invitationId, currentUser(request).email);
      if (!invitation || !(await invitations.remove(invitation._id))) throw invitationNotFound();
      request.log.info({ tenantId: invitation.tenantId, invitationId: invitation._id }, "invitation declined");
      return reply.code(204).send();
    },
  );

  app.post<{ Body: AcceptBody }>(
    "/api/invitations/accept",
    {
      config: { public: true },
      schema: {
        summary: "Accept an invitation with its token and a password; answers a session in that organization",
        description:
          "With an account for the invited email the password must be that account's; without one, the account " +
          "is created with this password. Wrong passwords and unknown tokens are throttled like logins.",
        body: {
          type: "object",
          additionalProperties: false,
          required: ["token", "password"],
          properties: {
            token: { type: "string", pattern: INVITATION_TOKEN_PATTERN },
            password: { type: "string", minLength: PASSWORD_MIN_LENGTH, maxLength: PASSWORD_MAX_LENGTH },
          },
          examples: [
            {
              token: "kin_3hX9aQm2VbT0rL5wZc8yEu.Qm9yZSBzZWNyZXQgdG9rZW4gZXhhbXBsZSBmb3IgZG9jcw",
              password: "correct horse battery staple",
            },
          ],
        },
        response: { 200: loginAnswerSchema, ...problemResponses(400, 401, 404, 429) },
      },
    },
    async (request) => {
      await throttle.assertMayTry(UNKNOWN_TOKEN, request.ip);
      const invitation = await invitations.byToken(request.body.token);
      if (!invitation) {
        await throttle.recordFailure(UNKNOWN_TOKEN, request.ip);
        throw invitationNotFound();
      }
      const { email } = invitation;
      await throttle.assertMayTry(email, request.ip);
      const user = await users.findByEmail(email);
      if (user) {
        if (!(await verifyPassword(request.body.password, user.passwordHash))) {
          await throttle.recordFailure(email, request.ip);
          throw new Problem(401, "login_failed", "wrong password for the invited account");
        }
      } else if (!(await users.create(email, await hashPassword(request.body.password)))) {
        throw new Problem(409, "conflict", "the account was created meanwhile; try again");
      }
      await throttle.reset(email, request.ip);
      await join(invitation);
      const all = await memberships.ofUser(email);
      const chosen = all.find((membership) => membership.tenantId === invitation.tenantId);
      if (!chosen) throw new Problem(404, "organization_not_found", "the organization no longer exists");
      request.log.info({ tenantId: invitation.tenantId, invitationId: invitation._id }, "invitation accepted");
      return opener.open(email, chosen, all);
    },
  );
}
