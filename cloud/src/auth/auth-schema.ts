// The auth API's answer shapes: JSON schemas and their TypeScript twins. No
// runtime imports, so the dashboard can import the types too.

export type { Role } from "./permissions.ts";

import type { Role } from "./permissions.ts";

export interface SessionUser {
  email: string;
  tenantId: string;
  role: Role;
}

export interface LoginAnswer {
  token: string;
  /** Epoch ms. */
  expiresAt: number;
  user: SessionUser;
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

export const loginAnswerSchema = {
  type: "object",
  additionalProperties: false,
  required: ["token", "expiresAt", "user"],
  properties: { token: { type: "string" }, expiresAt: { type: "integer" }, user: userSchema },
} as const;
