// The plugins API's shapes: JSON schemas and their TypeScript twins. No runtime imports beyond
// schemas, so the dashboard may import the types.

import type { PluginConfig, PluginStatus } from "@kestrel/wire";
import { pluginStatusSchema } from "../devices/device-view.ts";
import { targetSchema } from "../ota/campaign-schema.ts";
import type { CampaignTarget } from "../ota/campaign-store.ts";

export interface PluginNameParams {
  name: string;
}

export interface AssignmentParams extends PluginNameParams {
  assignmentId: string;
}

export interface AssignRequest {
  version: string;
  target: Partial<CampaignTarget>;
  config?: PluginConfig;
  enabled?: boolean;
}

export interface ChangeRequest {
  config?: PluginConfig;
  enabled?: boolean;
}

export interface UpgradeRequest {
  version: string;
}

export interface AssignmentView {
  assignmentId: string;
  plugin: string;
  version: string;
  artifactId: string;
  previousVersion: string | null;
  target: CampaignTarget;
  config: PluginConfig;
  enabled: boolean;
  campaignId: string;
  /** The delivering campaign: running, halted (with why), completed… */
  rollout: { status: string; haltReason: string | null; counts: Record<string, number> };
  createdBy: string;
  createdAt: number;
  updatedAt: number;
}

export interface PluginDeviceView {
  deviceId: string;
  assignmentId: string;
  /** The version the assignment delivers. */
  wanted: string;
  /** The device's last report on that delivery (from its artifact status reports). */
  delivery: { status: string; code: string | null; reason: string | null; running: string | null; at: number };
  /** What the device last reported of the plugin in its state (DeviceState.plugins); null: not installed. */
  installed: PluginStatus | null;
  online: boolean;
}

export interface PluginView {
  name: string;
  versions: Array<{
    artifactId: string;
    version: string;
    sha256: string;
    size: number;
    metrics: string[];
    signed: boolean;
    createdAt: number;
  }>;
  /** The telemetry metrics the plugin's latest version emits (history: GET /api/devices/{id}/telemetry). */
  telemetryMetrics: string[];
  assignments: AssignmentView[];
  devices: PluginDeviceView[];
  totals: {
    devices: number;
    /** Running the wanted version, enabled. */
    running: number;
    disabled: number;
    /** Stopped by a trap or the budget, refused, or the delivery failed or rolled back. */
    failed: number;
    pending: number;
    calls: number;
    errors: number;
  };
}

export interface PluginSummary {
  name: string;
  latestVersion: string;
  versions: number;
  assignments: number;
}

const NAME = { type: "string", pattern: "^[a-z][a-z0-9]{0,11}$" } as const;
const SEMVER = {
  type: "string",
  minLength: 5,
  maxLength: 32,
  pattern: "^[0-9]+\\.[0-9]+\\.[0-9]+[0-9A-Za-z.+-]*$",
} as const;
const CONFIG = {
  type: "object",
  description: "Numbers by name, at most 16 (a name like a metric's, not `name`); the plugin reads them with config().",
  maxProperties: 16,
  propertyNames: { pattern: "^(?!name$)[a-z][a-z0-9_]{0,31}$" },
  additionalProperties: { type: "number" },
} as const;

export const pluginNameParamsSchema = {
  type: "object",
  additionalProperties: false,
  required: ["name"],
  properties: { name: NAME },
  examples: [{ name: "dewpoint" }],
} as const;

export const assignmentParamsSchema = {
  type: "object",
  additionalProperties: false,
  required: ["name", "assignmentId"],
  properties: { name: NAME, assignmentId: { type: "string", pattern: "^pla_[A-Za-z0-9_-]{16}$" } },
  examples: [{ name: "dewpoint", assignmentId: "pla_Zt3k9Qm2Lp8xW4vN" }],
} as const;

export const assignRequestSchema = {
  type: "object",
  additionalProperties: false,
  required: ["version", "target"],
  properties: {
    version: SEMVER,
    target: targetSchema,
    config: CONFIG,
    enabled: { type: "boolean", description: "Run it once installed (default true)." },
  },
  examples: [{ version: "1.0.0", target: { groups: ["greenhouse"] }, config: { fahrenheit: 0 }, enabled: true }],
} as const;

export const changeRequestSchema = {
  type: "object",
  additionalProperties: false,
  minProperties: 1,
  properties: { config: CONFIG, enabled: { type: "boolean" } },
  examples: [{ config: { fahrenheit: 1 } }, { enabled: false }],
} as const;

export const upgradeRequestSchema = {
  type: "object",
  additionalProperties: false,
  required: ["version"],
  properties: { version: SEMVER },
  examples: [{ version: "2.0.0" }],
} as const;

const TARGET_VIEW = {
  type: "object",
  additionalProperties: false,
  required: ["devices", "tags", "groups"],
  properties: {
    devices: { type: "array", items: { type: "string" } },
    tags: { type: "array", items: { type: "string" } },
    groups: { type: "array", items: { type: "string" } },
  },
} as const;
const NULLABLE_STRING = { type: ["string", "null"] } as const;
const COUNTS = { type: "object", additionalProperties: { type: "integer" } } as const;

export const assignmentViewSchema = {
  type: "object",
  additionalProperties: false,
  required: [
    "assignmentId",
    "plugin",
    "version",
    "artifactId",
    "previousVersion",
    "target",
    "config",
    "enabled",
    "campaignId",
    "rollout",
    "createdBy",
    "createdAt",
    "updatedAt",
  ],
  properties: {
    assignmentId: { type: "string" },
    plugin: { type: "string" },
    version: { type: "string" },
    artifactId: { type: "string" },
    previousVersion: { ...NULLABLE_STRING, description: "What a rollback returns to." },
    target: TARGET_VIEW,
    config: { type: "object", additionalProperties: { type: "number" } },
    enabled: { type: "boolean" },
    campaignId: {
      type: "string",
      description: "The campaign delivering the current version (GET /api/campaigns/{id}).",
    },
    rollout: {
      type: "object",
      additionalProperties: false,
      required: ["status", "haltReason", "counts"],
      properties: { status: { type: "string" }, haltReason: NULLABLE_STRING, counts: COUNTS },
    },
    createdBy: { type: "string" },
    createdAt: { type: "integer" },
    updatedAt: { type: "integer" },
  },
} as const;

export const pluginViewSchema = {
  type: "object",
  additionalProperties: false,
  required: ["name", "versions", "telemetryMetrics", "assignments", "devices", "totals"],
  properties: {
    name: { type: "string" },
    versions: {
      type: "array",
      items: {
        type: "object",
        additionalProperties: false,
        required: ["artifactId", "version", "sha256", "size", "metrics", "signed", "createdAt"],
        properties: {
          artifactId: { type: "string" },
          version: { type: "string" },
          sha256: { type: "string" },
          size: { type: "integer" },
          metrics: { type: "array", items: { type: "string" } },
          signed: { type: "boolean" },
          createdAt: { type: "integer" },
        },
      },
    },
    telemetryMetrics: { type: "array", items: { type: "string" } },
    assignments: { type: "array", items: assignmentViewSchema },
    devices: {
      type: "array",
      items: {
        type: "object",
        additionalProperties: false,
        required: ["deviceId", "assignmentId", "wanted", "delivery", "installed", "online"],
        properties: {
          deviceId: { type: "string" },
          assignmentId: { type: "string" },
          wanted: { type: "string" },
          delivery: {
            type: "object",
            additionalProperties: false,
            required: ["status", "code", "reason", "running", "at"],
            properties: {
              status: { type: "string" },
              code: NULLABLE_STRING,
              reason: NULLABLE_STRING,
              running: NULLABLE_STRING,
              at: { type: "integer" },
            },
          },
          installed: { ...pluginStatusSchema, type: ["object", "null"] },
          online: { type: "boolean" },
        },
      },
    },
    totals: {
      type: "object",
      additionalProperties: false,
      required: ["devices", "running", "disabled", "failed", "pending", "calls", "errors"],
      properties: Object.fromEntries(
        ["devices", "running", "disabled", "failed", "pending", "calls", "errors"].map((key) => [
          key,
          { type: "integer" },
        ]),
      ),
    },
  },
} as const;

export const pluginListSchema = {
  type: "object",
  additionalProperties: false,
  required: ["items"],
  properties: {
    items: {
      type: "array",
      items: {
        type: "object",
        additionalProperties: false,
        required: ["name", "latestVersion", "versions", "assignments"],
        properties: {
          name: { type: "string" },
          latestVersion: { type: "string" },
          versions: { type: "integer" },
          assignments: { type: "integer" },
        },
      },
    },
  },
} as const;
