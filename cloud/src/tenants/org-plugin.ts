// The caller's organization: its info and settings, its members with their roles (addressed by
// member id), and the invitations its admins sent. Every query is scoped by the session's or key's
// organization; a member of another organization is a 404. Adding a member is an invitation the
// user accepts (invitation-plugin.ts), and its answer is the same whether the email has an account.

import type { FastifyInstance } from "fastify";
import type { Db } from "mongodb";
import { orgOf, type Principal, principalOf } from "../auth/access.ts";
import type { Role } from "../auth/permissions.ts";
import { SessionStore } from "../auth/session-store.ts";
import { normalizeEmail } from "../auth/user-store.ts";
import { Problem, problemResponses } from "../http/problem.ts";
import { type InvitationDoc, InvitationStore } from "./invitation-store.ts";
import { type MembershipDoc, MembershipStore, memberIdOf } from "./membership-store.ts";
import {
  addMemberBodySchema,
  changeRoleBodySchema,
  type InvitationView,
  invitationListSchema,
  invitationParamsSchema,
  type MemberView,
  memberListSchema,
  memberParamsSchema,
  memberSchema,
  type NewInvitation,
  newInvitationSchema,
  type OrganizationView,
  organizationSchema,
  type RetentionView,
  settingsBodySchema,
} from "./org-schema.ts";
import { TenantStore, withDefaults } from "./tenant-store.ts";

export interface OrgOptions {
  db: Db;
  sessionTtlSeconds: number;
}

interface MemberParams {
  memberId: string;
}

function toMemberView(doc: MembershipDoc): MemberView {
  return { memberId: memberIdOf(doc.email), email: doc.email, role: doc.role, createdAt: doc.createdAt.getTime() };
}

export function toInvitationView(doc: InvitationDoc): InvitationView {
  return {
    invitationId: doc._id,
    email: doc.email,
    role: doc.role,
    invitedBy: doc.invitedBy,
    createdAt: doc.createdAt.getTime(),
    expiresAt: doc.expiresAt.getTime(),
  };
}

/** Who sent an invitation, as the invitee will see it. */
function inviterOf(principal: Principal): string {
  return principal.kind === "user" ? principal.email : `API key ${principal.kind === "apiKey" ? principal.keyId : ""}`;
}

export async function orgPlugin(app: FastifyInstance, options: OrgOptions): Promise<void> {
  const tenants = new TenantStore(options.db);
  const memberships = new MembershipStore(options.db);
  const invitations = new InvitationStore(options.db);
  const sessions = new SessionStore(options.db, options.sessionTtlSeconds);

  async function organization(tenantId: string): Promise<OrganizationView> {
    const tenant = await tenants.find(tenantId);
    if (!tenant) throw new Problem(404, "organization_not_found", "the organization no longer exists");
    return { tenantId, name: tenant.name, createdAt: tenant.createdAt.getTime(), settings: withDefaults(tenant) };
  }

  /** Refuses to leave the organization without an admin (checked, not atomic: see README). */
  async function keepAnAdmin(member: MembershipDoc, newRole: Role | null): Promise<void> {
    if (member.role !== "admin" || newRole === "admin") return;
    if ((await memberships.countAdmins(member.tenantId)) <= 1) {
      throw new Problem(409, "last_admin", "the organization's last admin cannot be removed or demoted");
    }
  }

  async function member(tenantId: string, memberId: string): Promise<MembershipDoc> {
    const doc = await memberships.byMemberId(tenantId, memberId);
    if (!doc) throw new Problem(404, "member_not_found", `no member ${memberId} in this organization`);
    return doc;
  }

  app.get(
    "/api/org",
    {
      config: { permission: "org:read" },
      schema: {
        summary: "The caller's organization and its settings",
        response: { 200: organizationSchema, ...problemResponses(401, 403, 404) },
      },
    },
    (request) => organization(orgOf(request)),
  );

  app.patch<{ Body: { retention: RetentionView } }>(
    "/api/org/settings",
    {
      config: { permission: "settings:admin" },
      schema: {
        summary: "Change the organization's settings (telemetry retention)",
        body: settingsBodySchema,
        response: { 200: organizationSchema, ...problemResponses(400, 401, 403, 404) },
      },
    },
    async (request) => {
      const { retention } = request.body;
      if (retention.rollupDays < retention.rawDays) {
        throw new Problem(400, "invalid_request", "retention.rollupDays must not be shorter than retention.rawDays");
      }
      const tenantId = orgOf(request);
      await tenants.setRetention(tenantId, retention);
      request.log.info({ tenantId, retention }, "retention changed");
      return organization(tenantId);
    },
  );

  app.get(
    "/api/org/members",
    {
      config: { permission: "members:admin" },
      schema: {
        summary: "The organization's members and their roles",
        response: { 200: memberListSchema, ...problemResponses(401, 403) },
      },
    },
    async (request) => ({ items: (await memberships.ofOrganization(orgOf(request))).map(toMemberView) }),
  );

  app.post<{ Body: { email: string; role: Role } }>(
    "/api/org/members",
    {
      config: { permission: "members:admin" },
      schema: {
        summary: "Invite a user to the organization; they become a member once they accept",
        description:
          "The answer is the same whether or not the email has an account. The invitee accepts signed in " +
          "(POST /api/auth/invitations/{invitationId}/accept) or with the token and a password " +
          "(POST /api/invitations/accept). Inviting an email again replaces its pending invitation.",
        body: addMemberBodySchema,
        response: { 202: newInvitationSchema, ...problemResponses(400, 401, 403, 409) },
      },
    },
    async (request, reply): Promise<NewInvitation> => {
      const tenantId = orgOf(request);
      const email = normalizeEmail(request.body.email);
      if (await memberships.find(tenantId, email)) {
        throw new Problem(409, "already_member", `${email} is already a member of this organization`);
      }
      const { doc, token } = await invitations.create(
        tenantId,
        email,
        request.body.role,
        inviterOf(principalOf(request)),
      );
      request.log.info({ tenantId, invitationId: doc._id, role: doc.role }, "member invited");
      reply.code(202);
      return { ...toInvitationView(doc), token };
    },
  );

  app.get(
    "/api/org/invitations",
    {
      config: { permission: "members:admin" },
      schema: {
        summary: "The organization's pending invitations",
        response: { 200: invitationListSchema, ...problemResponses(401, 403) },
      },
    },
    async (request) => ({ items: (await invitations.ofOrganization(orgOf(request))).map(toInvitationView) }),
  );

  app.delete<{ Params: { invitationId: string } }>(
    "/api/org/invitations/:invitationId",
    {
      config: { permission: "members:admin" },
      schema: {
        summary: "Revoke a pending invitation",
        params: invitationParamsSchema,
        response: {
          204: { description: "The invitation can no longer be accepted.", type: "null" },
          ...problemResponses(400, 401, 403, 404),
        },
      },
    },
    async (request, reply) => {
      const tenantId = orgOf(request);
      if (!(await invitations.remove(request.params.invitationId, tenantId))) {
        throw new Problem(404, "invitation_not_found", "no such invitation in this organization");
      }
      request.log.info({ tenantId, invitationId: request.params.invitationId }, "invitation revoked");
      return reply.code(204).send();
    },
  );

  app.patch<{ Params: MemberParams; Body: { role: Role } }>(
    "/api/org/members/:memberId",
    {
      config: { permission: "members:admin" },
      schema: {
        summary: "Change a member's role",
        params: memberParamsSchema,
        body: changeRoleBodySchema,
        response: { 200: memberSchema, ...problemResponses(400, 401, 403, 404, 409) },
      },
    },
    async (request): Promise<MemberView> => {
      const tenantId = orgOf(request);
      const doc = await member(tenantId, request.params.memberId);
      await keepAnAdmin(doc, request.body.role);
      await memberships.setRole(tenantId, doc.email, request.body.role);
      await sessions.setRole(tenantId, doc.email, request.body.role);
      request.log.info({ tenantId, memberId: request.params.memberId, role: request.body.role }, "member role changed");
      return { ...toMemberView(doc), role: request.body.role };
    },
  );

  app.delete<{ Params: MemberParams }>(
    "/api/org/members/:memberId",
    {
      config: { permission: "members:admin" },
      schema: {
        summary: "Remove a member from the organization and end its sessions there",
        params: memberParamsSchema,
        response: {
          204: { description: "The member is removed.", type: "null" },
          ...problemResponses(400, 401, 403, 404, 409),
        },
      },
    },
    async (request, reply) => {
      const tenantId = orgOf(request);
      const doc = await member(tenantId, request.params.memberId);
      await keepAnAdmin(doc, null);
      await memberships.remove(tenantId, doc.email);
      await sessions.revokeMember(tenantId, doc.email);
      request.log.info({ tenantId, memberId: request.params.memberId }, "member removed");
      return reply.code(204).send();
    },
  );
}
