// The organization API's shapes: JSON schemas and their TypeScript twins. No runtime imports, so
// the dashboard can import the types too.

import type { Role } from "../auth/permissions.ts";

export interface RetentionView {
  rawDays: number;
  rollupDays: number;
}

export interface OrganizationView {
  tenantId: string;
  name: string;
  /** Epoch ms. */
  createdAt: number;
  settings: { retention: RetentionView };
}

export interface MemberView {
  /** Addresses the member in /api/org/members/{memberId}. */
  memberId: string;
  email: string;
  role: Role;
  /** Epoch ms. */
  createdAt: number;
}

export interface InvitationView {
  invitationId: string;
  email: string;
  role: Role;
  invitedBy: string;
  /** Epoch ms. */
  createdAt: number;
  expiresAt: number;
}

export interface NewInvitation extends InvitationView {
  /** For the invitee, shown once: accepts the invitation with their password (POST /api/invitations/accept). */
  token: string;
}

/** An invitation as its invitee sees it. */
export interface ReceivedInvitation {
  invitationId: string;
  organization: { tenantId: string; name: string };
  role: Role;
  invitedBy: string;
  createdAt: number;
  expiresAt: number;
}

const ROLE = { type: "string", enum: ["admin", "user", "viewer"] } as const;
/** At most ten years; the retention job deletes by day. */
const DAYS = { type: "integer", minimum: 1, maximum: 3650 } as const;
// No spaces, slashes or control characters (NUL included) on either side of the one @.
export const EMAIL = {
  type: "string",
  minLength: 3,
  maxLength: 254,
  pattern: "^[^\\s@/\\u0000-\\u001f\\u007f]+@[^\\s@/\\u0000-\\u001f\\u007f]+$",
} as const;

export const retentionSchema = {
  type: "object",
  additionalProperties: false,
  required: ["rawDays", "rollupDays"],
  properties: { rawDays: DAYS, rollupDays: DAYS },
} as const;

export const organizationSchema = {
  description: "The caller's organization and its settings.",
  type: "object",
  additionalProperties: false,
  required: ["tenantId", "name", "createdAt", "settings"],
  properties: {
    tenantId: { type: "string" },
    name: { type: "string" },
    createdAt: { type: "integer" },
    settings: {
      type: "object",
      additionalProperties: false,
      required: ["retention"],
      properties: { retention: retentionSchema },
    },
  },
} as const;

const ID = { type: "string", pattern: "^[A-Za-z0-9_-]{22}$" } as const;

export const memberSchema = {
  description: "A member of the organization.",
  type: "object",
  additionalProperties: false,
  required: ["memberId", "email", "role", "createdAt"],
  properties: { memberId: ID, email: { type: "string" }, role: ROLE, createdAt: { type: "integer" } },
} as const;

const invitationProperties = {
  invitationId: ID,
  email: { type: "string" },
  role: ROLE,
  invitedBy: { type: "string" },
  createdAt: { type: "integer" },
  expiresAt: { type: "integer" },
} as const;
const INVITATION_FIELDS = ["invitationId", "email", "role", "invitedBy", "createdAt", "expiresAt"] as const;

export const invitationSchema = {
  description: "A pending invitation.",
  type: "object",
  additionalProperties: false,
  required: INVITATION_FIELDS,
  properties: invitationProperties,
} as const;

export const newInvitationSchema = {
  description:
    "The invitation, the same whether or not the email has an account. `token` is shown only here: hand it to the invitee.",
  type: "object",
  additionalProperties: false,
  required: [...INVITATION_FIELDS, "token"],
  properties: { ...invitationProperties, token: { type: "string" } },
} as const;

export const invitationListSchema = {
  description: "The organization's pending invitations, oldest first.",
  type: "object",
  additionalProperties: false,
  required: ["items"],
  properties: { items: { type: "array", items: invitationSchema } },
} as const;

export const receivedInvitationListSchema = {
  description: "Invitations waiting for the signed-in user, oldest first.",
  type: "object",
  additionalProperties: false,
  required: ["items"],
  properties: {
    items: {
      type: "array",
      items: {
        type: "object",
        additionalProperties: false,
        required: ["invitationId", "organization", "role", "invitedBy", "createdAt", "expiresAt"],
        properties: {
          invitationId: ID,
          organization: {
            type: "object",
            additionalProperties: false,
            required: ["tenantId", "name"],
            properties: { tenantId: { type: "string" }, name: { type: "string" } },
          },
          role: ROLE,
          invitedBy: { type: "string" },
          createdAt: { type: "integer" },
          expiresAt: { type: "integer" },
        },
      },
    },
  },
} as const;

export const memberListSchema = {
  description: "The organization's members, by email.",
  type: "object",
  additionalProperties: false,
  required: ["items"],
  properties: { items: { type: "array", items: memberSchema } },
} as const;

export const settingsBodySchema = {
  type: "object",
  additionalProperties: false,
  required: ["retention"],
  properties: { retention: retentionSchema },
  examples: [{ retention: { rawDays: 30, rollupDays: 365 } }],
} as const;

export const addMemberBodySchema = {
  type: "object",
  additionalProperties: false,
  required: ["email", "role"],
  properties: { email: EMAIL, role: ROLE },
  examples: [{ email: "operator@example.com", role: "user" }],
} as const;

export const changeRoleBodySchema = {
  type: "object",
  additionalProperties: false,
  required: ["role"],
  properties: { role: ROLE },
  examples: [{ role: "viewer" }],
} as const;

export const memberParamsSchema = {
  type: "object",
  additionalProperties: false,
  required: ["memberId"],
  properties: { memberId: ID },
  examples: [{ memberId: "q0Q3cS6zU8bTq5m1xWv2Zg" }],
} as const;

export const invitationParamsSchema = {
  type: "object",
  additionalProperties: false,
  required: ["invitationId"],
  properties: { invitationId: ID },
  examples: [{ invitationId: "3hX9aQm2VbT0rL5wZc8yEu" }],
} as const;
