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
  email: string;
  role: Role;
  /** Epoch ms. */
  createdAt: number;
}

export interface AddedMember extends MemberView {
  /** Only when the user was created by this call: shown once, never stored in plain text. */
  initialPassword?: string;
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

const memberProperties = { email: { type: "string" }, role: ROLE, createdAt: { type: "integer" } } as const;

export const memberSchema = {
  description: "A member of the organization.",
  type: "object",
  additionalProperties: false,
  required: ["email", "role", "createdAt"],
  properties: memberProperties,
} as const;

export const addedMemberSchema = {
  description: "The new member; `initialPassword` only when the user did not exist (shown once).",
  type: "object",
  additionalProperties: false,
  required: ["email", "role", "createdAt"],
  properties: { ...memberProperties, initialPassword: { type: "string" } },
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
  required: ["email"],
  properties: { email: EMAIL },
  examples: [{ email: "operator@example.com" }],
} as const;
