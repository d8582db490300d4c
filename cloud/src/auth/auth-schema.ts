// The auth API's answer shapes: JSON schemas and their TypeScript twins. No
// runtime imports, so the dashboard can import the types too.

export type { Role } from "./permissions.ts";

import type { Role } from "./permissions.ts";

export interface SessionUser {
  email: string;
  tenantId: string;
  role: Role;
}

/** An organization the user belongs to, and the user's role there. */
export interface OrganizationRef {
  tenantId: string;
  name: string;
  role: Role;
}

export interface LoginAnswer {
  token: string;
  /** Epoch ms. */
  expiresAt: number;
  /** The session's organization is `user.tenantId`. */
  user: SessionUser;
  /** Every organization the user may switch to (POST /api/auth/switch). */
  organizations: OrganizationRef[];
}

export const userSchema = {
  type: "object",
  additionalProperties: false,
  required: ["email", "tenantId", "role"],
  properties: {
    email: { type: "string" },
    tenantId: { type: "string" },
    role: { type: "string", enum: ["admin", "user", "viewer"] },
  },
} as const;

export const organizationRefSchema = {
  type: "object",
  additionalProperties: false,
  required: ["tenantId", "name", "role"],
  properties: {
    tenantId: { type: "string" },
    name: { type: "string" },
    role: { type: "string", enum: ["admin", "user", "viewer"] },
  },
} as const;

export const loginAnswerSchema = {
  description: "A new session bound to one organization.",
  type: "object",
  additionalProperties: false,
  required: ["token", "expiresAt", "user", "organizations"],
  properties: {
    token: { type: "string" },
    expiresAt: { type: "integer" },
    user: userSchema,
    organizations: { type: "array", items: organizationRefSchema },
  },
} as const;
