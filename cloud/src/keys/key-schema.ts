// The API keys API's shapes: JSON schemas and their TypeScript twins. No runtime imports but the
// import-free text-schema.ts, so the dashboard can import the types too.

import type { Scope } from "../auth/permissions.ts";
import { ONE_LINE_PATTERN } from "../http/text-schema.ts";

export interface KeyView {
  keyId: string;
  name: string;
  scopes: Scope[];
  /** Epoch ms, like every time below. */
  createdAt: number;
  createdBy: string;
  expiresAt: number | null;
  lastUsedAt: number | null;
  revokedAt: number | null;
}

export interface CreatedKey extends KeyView {
  /** The secret, shown only in this answer: present it as `Authorization: Bearer <key>`. */
  key: string;
}

export interface CreateKeyBody {
  name: string;
  scopes: Scope[];
  expiresAt?: number;
}

const SCOPE = { type: "string", enum: ["read", "write", "ingest", "admin"] } as const;
const NULLABLE_TIME = { type: ["integer", "null"] } as const;

const keyProperties = {
  keyId: { type: "string" },
  name: { type: "string" },
  scopes: { type: "array", items: SCOPE },
  createdAt: { type: "integer" },
  createdBy: { type: "string" },
  expiresAt: NULLABLE_TIME,
  lastUsedAt: NULLABLE_TIME,
  revokedAt: NULLABLE_TIME,
} as const;

const keyRequired = ["keyId", "name", "scopes", "createdAt", "createdBy", "expiresAt", "lastUsedAt", "revokedAt"];

export const keyViewSchema = {
  type: "object",
  additionalProperties: false,
  required: keyRequired,
  properties: keyProperties,
} as const;

export const createdKeySchema = {
  description: "The new key; `key` is the secret and is never shown again.",
  type: "object",
  additionalProperties: false,
  required: [...keyRequired, "key"],
  properties: { ...keyProperties, key: { type: "string" } },
} as const;

export const keyListSchema = {
  description: "The organization's keys, newest first, without their secrets.",
  type: "object",
  additionalProperties: false,
  required: ["items"],
  properties: { items: { type: "array", items: keyViewSchema } },
} as const;

export const createKeyBodySchema = {
  type: "object",
  additionalProperties: false,
  required: ["name", "scopes"],
  properties: {
    name: { type: "string", minLength: 1, maxLength: 100, pattern: ONE_LINE_PATTERN },
    scopes: { type: "array", minItems: 1, maxItems: 4, uniqueItems: true, items: SCOPE },
    expiresAt: { type: "integer", minimum: 0, maximum: 8_640_000_000_000_000 },
  },
  examples: [
    { name: "grafana", scopes: ["read"] },
    { name: "line 3 integration", scopes: ["read", "write"], expiresAt: 4_102_444_800_000 },
  ],
} as const;

export const keyIdParamsSchema = {
  type: "object",
  additionalProperties: false,
  required: ["keyId"],
  properties: { keyId: { type: "string", minLength: 1, maxLength: 64 } },
  examples: [{ keyId: "9f0c3c1a-5d2e-4b7f-8a61-2c4e5f6a7b8c" }],
} as const;
