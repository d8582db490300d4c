// A command as the API shows it: JSON schemas and their TypeScript twins. Only
// type imports and the wire's constants, so the dashboard can import the types too.

import { COMMAND_NAMES, type CommandName } from "@kestrel/wire";
import type { CommandStatus } from "./command-store.ts";

export type CommandValue = string | number | boolean;

export interface CommandView {
  id: string;
  deviceId: string;
  name: CommandName;
  params: Record<string, CommandValue> | null;
  status: CommandStatus;
  /** Epoch ms. */
  createdAt: number;
  updatedAt: number;
  expiresAt: number;
  reason: string | null;
  result: Record<string, CommandValue> | null;
  /** The device's final ack when it arrived after the command had expired; the status stays `expired`. */
  late: LateOutcomeView | null;
  history: Array<{ status: CommandStatus; at: number }>;
}

export interface LateOutcomeView {
  status: "done" | "failed";
  /** Epoch ms: when the gateway received the ack. */
  at: number;
  reason: string | null;
  result: Record<string, CommandValue> | null;
}

export interface CommandList {
  items: CommandView[];
}

export interface NewCommand {
  name: CommandName;
  params?: Record<string, CommandValue>;
  ttlSeconds?: number;
}

export const COMMAND_STATUSES = ["queued", "sent", "delivered", "done", "failed", "expired"] as const;
export const DEFAULT_TTL_SECONDS = 3600;
export const MAX_TTL_SECONDS = 7 * 24 * 3600;

const flatRecord = {
  type: "object",
  maxProperties: 32,
  propertyNames: { pattern: "^[a-z][a-z0-9_]{0,31}$" },
  additionalProperties: { anyOf: [{ type: "string" }, { type: "number" }, { type: "boolean" }] },
} as const;

export const newCommandSchema = {
  type: "object",
  additionalProperties: false,
  required: ["name"],
  properties: {
    name: { type: "string", enum: COMMAND_NAMES },
    params: flatRecord,
    ttlSeconds: { type: "integer", minimum: 1, maximum: MAX_TTL_SECONDS },
  },
  examples: [
    { name: "ping" },
    { name: "set-config", params: { sample_interval_ms: 30_000 }, ttlSeconds: 300 },
    { name: "plugin-config", params: { name: "smoothing", window: 8 } },
  ],
} as const;

export const commandViewSchema = {
  type: "object",
  additionalProperties: false,
  required: [
    "id",
    "deviceId",
    "name",
    "params",
    "status",
    "createdAt",
    "updatedAt",
    "expiresAt",
    "reason",
    "result",
    "late",
    "history",
  ],
  properties: {
    id: { type: "string" },
    deviceId: { type: "string" },
    name: { type: "string" },
    params: { ...flatRecord, type: ["object", "null"] },
    status: { type: "string", enum: COMMAND_STATUSES },
    createdAt: { type: "integer" },
    updatedAt: { type: "integer" },
    expiresAt: { type: "integer" },
    reason: { type: ["string", "null"] },
    result: { ...flatRecord, type: ["object", "null"] },
    late: {
      description:
        "The device's done or failed ack that arrived after the command had expired (the status stays expired).",
      type: ["object", "null"],
      additionalProperties: false,
      required: ["status", "at", "reason", "result"],
      properties: {
        status: { type: "string", enum: ["done", "failed"] },
        at: { type: "integer" },
        reason: { type: ["string", "null"] },
        result: { ...flatRecord, type: ["object", "null"] },
      },
    },
    history: {
      type: "array",
      items: {
        type: "object",
        additionalProperties: false,
        required: ["status", "at"],
        properties: { status: { type: "string", enum: COMMAND_STATUSES }, at: { type: "integer" } },
      },
    },
  },
} as const;

export const commandListSchema = {
  type: "object",
  additionalProperties: false,
  required: ["items"],
  properties: { items: { type: "array", items: commandViewSchema } },
} as const;
