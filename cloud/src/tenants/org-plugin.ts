// The caller's organization: its info and settings, and its members with their roles. Every query
// is scoped by the session's or key's organization; a member of another organization is a 404.

import type { FastifyInstance } from "fastify";
import type { Db } from "mongodb";
import { orgOf } from "../auth/access.ts";
import { hashPassword } from "../auth/passwords.ts";
import type { Role } from "../auth/permissions.ts";
import { newSecret } from "../auth/secrets.ts";
import { SessionStore } from "../auth/session-store.ts";
import { normalizeEmail, UserStore } from "../auth/user-store.ts";
import { Problem, problemResponses } from "../http/problem.ts";
import { type MembershipDoc, MembershipStore } from "./membership-store.ts";
import {
  type AddedMember,
  addedMemberSchema,
  addMemberBodySchema,
  changeRoleBodySchema,
  type MemberView,
  memberListSchema,
  memberParamsSchema,
  memberSchema,
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

interface EmailParams {
  email: string;
}

function toMemberView(doc: MembershipDoc): MemberView {
  return { email: doc.email, role: doc.role, createdAt: doc.createdAt.getTime() };
}

function memberNotFound(email: string): Problem {
  return new Problem(404, "member_not_found", `${email} is not a member of this organization`);
}

export async function orgPlugin(app: FastifyInstance, options: OrgOptions): Promise<void> {
  const tenants = new TenantStore(options.db);
  const memberships = new MembershipStore(options.db);
  const users = new UserStore(options.db);
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

  async function member(tenantId: string, email: string): Promise<MembershipDoc> {
    const doc = await memberships.find(tenantId, normalizeEmail(email));
    if (!doc) throw memberNotFound(email);
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
        summary: "Add a user to the organization, creating the user with a one-time password if new",
        body: addMemberBodySchema,
        response: { 201: addedMemberSchema, ...problemResponses(400, 401, 403, 409) },
      },
    },
    async (request, reply): Promise<AddedMember> => {
      const tenantId = orgOf(request);
      const email = normalizeEmail(request.body.email);
      const password = newSecret();
      // An existing user keeps its password: an admin here must not take over its other organizations.
      const created = await users.create(email, await hashPassword(password));
      if (!(await memberships.add(tenantId, email, request.body.role))) {
        throw new Problem(409, "already_member", `${email} is already a member of this organization`);
      }
      const doc = await member(tenantId, email);
      request.log.info({ tenantId, email, role: doc.role, created }, "member added");
      reply.code(201);
      return created ? { ...toMemberView(doc), initialPassword: password } : toMemberView(doc);
    },
  );

  app.patch<{ Params: EmailParams; Body: { role: Role } }>(
    "/api/org/members/:email",
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
      const doc = await member(tenantId, request.params.email);
      await keepAnAdmin(doc, request.body.role);
      await memberships.setRole(tenantId, doc.email, request.body.role);
      await sessions.setRole(tenantId, doc.email, request.body.role);
      request.log.info({ tenantId, email: doc.email, role: request.body.role }, "member role changed");
      return { ...toMemberView(doc), role: request.body.role };
    },
  );

  app.delete<{ Params: EmailParams }>(
    "/api/org/members/:email",
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
      const doc = await member(tenantId, request.params.email);
      await keepAnAdmin(doc, null);
      await memberships.remove(tenantId, doc.email);
      await sessions.revokeMember(tenantId, doc.email);
      request.log.info({ tenantId, email: doc.email }, "member removed");
      return reply.code(204).send();
    },
  );
}
