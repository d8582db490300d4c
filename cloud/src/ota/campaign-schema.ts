// The campaigns API's shapes: JSON schemas and their TypeScript twins.

import { ARTIFACT_STATUSES } from "@kestrel/wire/artifacts";
import { DISPLAY_NAME_PATTERN } from "../http/text-schema.ts";
import type { CampaignStatus, CampaignTarget } from "./campaign-store.ts";
import type { DeviceRolloutStatus, Stage, Thresholds } from "./rollout.ts";

export type StageState = "waiting" | "running" | "soaking" | "done";

export interface StageView extends Stage {
  index: number;
  devices: number;
  state: StageState;
  counts: Partial<Record<DeviceRolloutStatus, number>>;
}

export interface CampaignView {
  campaignId: string;
  name: string;
  artifactId: string;
  kind: string;
  version: string;
  sha256: string;
  status: CampaignStatus;
  haltReason: string | null;
  stage: number;
  stageStartedAt: number;
  stageDoneAt: number | null;
  stages: StageView[];
  deviceCount: number;
  counts: Partial<Record<DeviceRolloutStatus, number>>;
  target: CampaignTarget;
  thresholds: Thresholds;
  startWindowSeconds: number;
  deviceTimeoutSeconds: number;
  allowDowngrade: boolean;
  autoAdvance: boolean;
  createdBy: string;
  createdAt: number;
  updatedAt: number;
}

export interface CampaignDeviceView {
  deviceId: string;
  stage: number;
  status: DeviceRolloutStatus;
  bytes: number | null;
  total: number | null;
  code: string | null;
  reason: string | null;
  running: string | null;
  offers: number;
  updatedAt: number;
}

const ROLLOUT_STATUSES: readonly DeviceRolloutStatus[] = ["pending", ...ARTIFACT_STATUSES];

const COUNTS = {
  type: "object",
  description: "Devices by status.",
  additionalProperties: false,
  properties: Object.fromEntries(ROLLOUT_STATUSES.map((status) => [status, { type: "integer" }])),
} as const;

const RATE = { type: "number", minimum: 0, maximum: 1 } as const;
const LABELS = { type: "array", maxItems: 20, items: { type: "string", minLength: 1, maxLength: 64 } } as const;
const NULLABLE_STRING = { type: ["string", "null"] } as const;

const stageSchema = {
  type: "object",
  additionalProperties: false,
  required: ["percent", "soakSeconds"],
  properties: {
    percent: { type: "number", exclusiveMinimum: 0, maximum: 100 },
    soakSeconds: { type: "integer", minimum: 0, maximum: 30 * 86_400 },
  },
} as const;

const thresholdsSchema = {
  type: "object",
  additionalProperties: false,
  properties: { failureRate: RATE, rollbackRate: RATE, watchdogRate: RATE },
} as const;

const targetSchema = {
  type: "object",
  additionalProperties: false,
  properties: {
    devices: { type: "array", maxItems: 10_000, items: { type: "string", minLength: 1, maxLength: 64 } },
    tags: LABELS,
    groups: LABELS,
  },
} as const;

export const newCampaignSchema = {
  type: "object",
  additionalProperties: false,
  required: ["name", "artifactId", "target"],
  properties: {
    name: { type: "string", minLength: 1, maxLength: 100, pattern: DISPLAY_NAME_PATTERN },
    artifactId: { type: "string", pattern: "^art_[A-Za-z0-9_-]{22}$" },
    target: targetSchema,
    stages: { type: "array", minItems: 1, maxItems: 10, items: stageSchema },
    startWindowSeconds: { type: "integer", minimum: 0, maximum: 86_400 },
    deviceTimeoutSeconds: { type: "integer", minimum: 60, maximum: 30 * 86_400 },
    thresholds: thresholdsSchema,
    allowDowngrade: { type: "boolean" },
    autoAdvance: { type: "boolean" },
  },
  examples: [
    {
      name: "fw 1.3.0 to site A",
      artifactId: "art_q0r9XbZk3mN1pL2sT4vW6y",
      target: { tags: ["site-a"] },
      stages: [
        { percent: 1, soakSeconds: 3600 },
        { percent: 10, soakSeconds: 3600 },
        { percent: 50, soakSeconds: 3600 },
        { percent: 100, soakSeconds: 0 },
      ],
      startWindowSeconds: 600,
      thresholds: { failureRate: 0.1, rollbackRate: 0.05, watchdogRate: 0.1 },
    },
  ],
} as const;

export const campaignViewSchema = {
  type: "object",
  additionalProperties: false,
  required: [
    "campaignId",
    "name",
    "artifactId",
    "kind",
    "version",
    "sha256",
    "status",
    "haltReason",
    "stage",
    "stageStartedAt",
    "stageDoneAt",
    "stages",
    "deviceCount",
    "counts",
    "target",
    "thresholds",
    "startWindowSeconds",
    "deviceTimeoutSeconds",
    "allowDowngrade",
    "autoAdvance",
    "createdBy",
    "createdAt",
    "updatedAt",
  ],
  properties: {
    campaignId: { type: "string" },
    name: { type: "string" },
    artifactId: { type: "string" },
    kind: { type: "string" },
    version: { type: "string" },
    sha256: { type: "string" },
    status: { type: "string", enum: ["running", "paused", "halted", "cancelled", "completed"] },
    haltReason: NULLABLE_STRING,
    stage: { type: "integer", description: "Index of the current stage (0-based)." },
    stageStartedAt: { type: "integer" },
    stageDoneAt: { type: ["integer", "null"], description: "When the current stage finished; it soaks from then." },
    stages: {
      type: "array",
      items: {
        type: "object",
        additionalProperties: false,
        required: ["index", "percent", "soakSeconds", "devices", "state", "counts"],
        properties: {
          index: { type: "integer" },
          percent: { type: "number" },
          soakSeconds: { type: "integer" },
          devices: { type: "integer" },
          state: { type: "string", enum: ["waiting", "running", "soaking", "done"] },
          counts: COUNTS,
        },
      },
    },
    deviceCount: { type: "integer" },
    counts: COUNTS,
    target: {
      type: "object",
      additionalProperties: false,
      required: ["devices", "tags", "groups"],
      properties: { devices: { type: "array", items: { type: "string" } }, tags: LABELS, groups: LABELS },
    },
    thresholds: {
      type: "object",
      additionalProperties: false,
      required: ["failureRate", "rollbackRate", "watchdogRate"],
      properties: { failureRate: RATE, rollbackRate: RATE, watchdogRate: RATE },
    },
    startWindowSeconds: { type: "integer" },
    deviceTimeoutSeconds: { type: "integer" },
    allowDowngrade: { type: "boolean" },
    autoAdvance: { type: "boolean" },
    createdBy: { type: "string" },
    createdAt: { type: "integer" },
    updatedAt: { type: "integer" },
  },
} as const;

export const campaignDeviceSchema = {
  type: "object",
  additionalProperties: false,
  required: ["deviceId", "stage", "status", "bytes", "total", "code", "reason", "running", "offers", "updatedAt"],
  properties: {
    deviceId: { type: "string" },
    stage: { type: "integer" },
    status: { type: "string", enum: ROLLOUT_STATUSES },
    bytes: { type: ["integer", "null"], description: "Bytes downloaded, while downloading." },
    total: { type: ["integer", "null"] },
    code: { ...NULLABLE_STRING, description: "Why it failed or rolled back (a stable code)." },
    reason: NULLABLE_STRING,
    running: { ...NULLABLE_STRING, description: "The version the device last said it runs." },
    offers: { type: "integer" },
    updatedAt: { type: "integer" },
  },
} as const;

export const campaignIdParamsSchema = {
  type: "object",
  additionalProperties: false,
  required: ["campaignId"],
  properties: { campaignId: { type: "string", pattern: "^cmp_[A-Za-z0-9_-]{16}$" } },
  examples: [{ campaignId: "cmp_Zt3k9Qm2Lp8xW4vN" }],
} as const;

export const historySchema = {
  description: "Transitions, oldest first: the campaign's (no deviceId) and its devices'.",
  type: "object",
  additionalProperties: false,
  required: ["items"],
  properties: {
    items: {
      type: "array",
      items: {
        type: "object",
        additionalProperties: false,
        required: ["at", "from", "to"],
        properties: {
          at: { type: "integer" },
          deviceId: { type: "string" },
          from: NULLABLE_STRING,
          to: { type: "string" },
          detail: { type: "string" },
          code: { type: "string" },
        },
      },
    },
  },
} as const;

export { ROLLOUT_STATUSES };
