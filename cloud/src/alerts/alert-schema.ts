// The alerts API's shapes: rules (scope, condition, severity), alerts with their history, silences.
// JSON schemas next to their TypeScript twins.

import type { LevelCondition, RateCondition } from "./conditions.ts";

export const SEVERITIES = ["info", "warning", "critical"] as const;
export type Severity = (typeof SEVERITIES)[number];

/** Platform metrics a system rule watches, per organization (gateway ones per gateway). */
export const SYSTEM_METRICS = [
  "ingest_lag_seconds",
  "gateway_queue_depth",
  "gateway_queue_oldest_age_seconds",
  "webhook_failure_rate",
] as const;
export type SystemMetric = (typeof SYSTEM_METRICS)[number];

export type RuleScope =
  | { type: "all" }
  | { type: "device"; deviceId: string }
  | { type: "tag"; tag: string }
  | { type: "group"; group: string };

export type AlertCondition =
  | ({ kind: "threshold"; metric: string } & LevelCondition)
  | ({ kind: "rate"; metric: string } & RateCondition)
  | { kind: "offline"; forSeconds: number }
  | { kind: "safe_mode" }
  | { kind: "watchdog_resets"; count: number; windowSeconds: number }
  | ({ kind: "system"; metric: SystemMetric } & LevelCondition);

export type ConditionKind = AlertCondition["kind"];

/** A condition as a request may give it: a rate rule's direction and window have defaults. */
export type AlertConditionInput =
  | Exclude<AlertCondition, { kind: "rate" }>
  | ({ kind: "rate"; metric: string } & Omit<RateCondition, "direction" | "windowSeconds"> &
      Partial<Pick<RateCondition, "direction" | "windowSeconds">>);

/** Kinds evaluated as telemetry samples are applied; the others by the alert engine. */
export const SAMPLE_KINDS: readonly ConditionKind[] = ["threshold", "rate"];

export interface RuleBody {
  name: string;
  severity?: Severity;
  enabled?: boolean;
  scope?: RuleScope;
  condition: AlertConditionInput;
}

export interface RuleView {
  ruleId: string;
  name: string;
  severity: Severity;
  enabled: boolean;
  scope: RuleScope;
  condition: AlertCondition;
  createdAt: number;
  updatedAt: number;
}

export type AlertStatus = "firing" | "acknowledged" | "resolved";

export interface AlertView {
  alertId: string;
  ruleId: string;
  ruleName: string;
  kind: ConditionKind;
  severity: Severity;
  subject: string;
  deviceId: string | null;
  metric: string | null;
  status: AlertStatus;
  /** A silence muted its notifications. */
  silenced: boolean;
  firedAt: number;
  value: number | null;
  acknowledgedAt: number | null;
  acknowledgedBy: string | null;
  resolvedAt: number | null;
  resolvedValue: number | null;
  history: Array<{ status: AlertStatus; at: number; by: string | null; note?: string }>;
}

export interface SilenceBody {
  ruleId?: string;
  deviceId?: string;
  startsAt?: number;
  endsAt: number;
  comment?: string;
}

export interface SilenceView {
  silenceId: string;
  ruleId: string | null;
  deviceId: string | null;
  startsAt: number;
  endsAt: number;
  comment: string;
  createdBy: string;
  createdAt: number;
  active: boolean;
}

export interface AlertListQuery {
  status?: "open" | AlertStatus;
  ruleId?: string;
  deviceId?: string;
  limit?: string;
  cursor?: string;
}

const ID = { type: "string", minLength: 1, maxLength: 64, pattern: "^[A-Za-z0-9_-]+$" } as const;
const METRIC = { type: "string", pattern: "^[a-z][a-z0-9_]{0,31}$" } as const;
const LABEL = { type: "string", minLength: 1, maxLength: 32, pattern: "^[A-Za-z0-9_.:-]+$" } as const;
const NUMBER = { type: "number" } as const;
const FOR_SECONDS = { type: "integer", minimum: 0, maximum: 7 * 86_400 } as const;
const level = {
  op: { type: "string", enum: ["above", "below", "outside"] },
  low: NUMBER,
  high: NUMBER,
  clearLow: NUMBER,
  clearHigh: NUMBER,
  forSeconds: FOR_SECONDS,
} as const;

const conditionSchema = {
  description: "What makes the alert fire; `kind` picks the shape.",
  oneOf: [
    {
      type: "object",
      additionalProperties: false,
      required: ["kind", "metric", "op"],
      properties: { kind: { const: "threshold" }, metric: METRIC, ...level },
    },
    {
      type: "object",
      additionalProperties: false,
      required: ["kind", "metric", "perMinute"],
      properties: {
        kind: { const: "rate" },
        metric: METRIC,
        perMinute: { type: "number", exclusiveMinimum: 0 },
        direction: { type: "string", enum: ["rise", "fall", "either"] },
        windowSeconds: { type: "integer", minimum: 1, maximum: 86_400 },
        clearPerMinute: { type: "number", minimum: 0 },
      },
    },
    {
      type: "object",
      additionalProperties: false,
      required: ["kind", "forSeconds"],
      properties: { kind: { const: "offline" }, forSeconds: { type: "integer", minimum: 1, maximum: 7 * 86_400 } },
    },
    { type: "object", additionalProperties: false, required: ["kind"], properties: { kind: { const: "safe_mode" } } },
    {
      type: "object",
      additionalProperties: false,
      required: ["kind", "count", "windowSeconds"],
      properties: {
        kind: { const: "watchdog_resets" },
        count: { type: "integer", minimum: 0, maximum: 1000 },
        windowSeconds: { type: "integer", minimum: 60, maximum: 7 * 86_400 },
      },
    },
    {
      type: "object",
      additionalProperties: false,
      required: ["kind", "metric", "op"],
      properties: { kind: { const: "system" }, metric: { type: "string", enum: SYSTEM_METRICS }, ...level },
    },
  ],
} as const;

const scopeSchema = {
  description: "Which devices the rule watches (system rules watch the organization).",
  oneOf: [
    { type: "object", additionalProperties: false, required: ["type"], properties: { type: { const: "all" } } },
    {
      type: "object",
      additionalProperties: false,
      required: ["type", "deviceId"],
      properties: { type: { const: "device" }, deviceId: ID },
    },
    {
      type: "object",
      additionalProperties: false,
      required: ["type", "tag"],
      properties: { type: { const: "tag" }, tag: LABEL },
    },
    {
      type: "object",
      additionalProperties: false,
      required: ["type", "group"],
      properties: { type: { const: "group" }, group: LABEL },
    },
  ],
} as const;

const ruleFields = {
  name: { type: "string", minLength: 1, maxLength: 100, pattern: "^\\S(.*\\S)?$" },
  severity: { type: "string", enum: SEVERITIES },
  enabled: { type: "boolean" },
  scope: scopeSchema,
  condition: conditionSchema,
} as const;

export const ruleBodySchema = {
  type: "object",
  additionalProperties: false,
  required: ["name", "condition"],
  properties: ruleFields,
  examples: [
    {
      name: "Too hot",
      severity: "critical",
      scope: { type: "tag", tag: "greenhouse" },
      condition: { kind: "threshold", metric: "temperature", op: "above", high: 35, clearHigh: 33, forSeconds: 60 },
    },
  ],
} as const;

export const ruleUpdateSchema = {
  type: "object",
  additionalProperties: false,
  minProperties: 1,
  properties: ruleFields,
  examples: [{ enabled: false }],
} as const;

const freeObject = { type: "object", additionalProperties: true } as const;

export const ruleViewSchema = {
  type: "object",
  additionalProperties: false,
  required: ["ruleId", "name", "severity", "enabled", "scope", "condition", "createdAt", "updatedAt"],
  properties: {
    ruleId: { type: "string" },
    name: { type: "string" },
    severity: { type: "string" },
    enabled: { type: "boolean" },
    scope: { ...freeObject, description: "As in the request body." },
    condition: { ...freeObject, description: "As in the request body." },
    createdAt: { type: "integer" },
    updatedAt: { type: "integer" },
  },
} as const;

export const ruleListSchema = {
  type: "object",
  additionalProperties: false,
  required: ["items"],
  properties: { items: { type: "array", items: ruleViewSchema } },
} as const;

export const ruleParamsSchema = {
  type: "object",
  additionalProperties: false,
  required: ["ruleId"],
  properties: { ruleId: ID },
  examples: [{ ruleId: "alr_7Qm2x9Lk3Vb8Nc1Z" }],
} as const;

const TIME = { type: ["integer", "null"] } as const;
const STATUS = { type: "string", enum: ["firing", "acknowledged", "resolved"] } as const;

export const alertViewSchema = {
  type: "object",
  additionalProperties: false,
  required: [
    "alertId",
    "ruleId",
    "ruleName",
    "kind",
    "severity",
    "subject",
    "deviceId",
    "metric",
    "status",
    "silenced",
    "firedAt",
    "value",
    "acknowledgedAt",
    "acknowledgedBy",
    "resolvedAt",
    "resolvedValue",
    "history",
  ],
  properties: {
    alertId: { type: "string" },
    ruleId: { type: "string" },
    ruleName: { type: "string" },
    kind: { type: "string" },
    severity: { type: "string" },
    subject: { type: "string" },
    deviceId: { type: ["string", "null"] },
    metric: { type: ["string", "null"] },
    status: STATUS,
    silenced: { type: "boolean" },
    firedAt: { type: "integer" },
    value: { type: ["number", "null"] },
    acknowledgedAt: TIME,
    acknowledgedBy: { type: ["string", "null"] },
    resolvedAt: TIME,
    resolvedValue: { type: ["number", "null"] },
    history: {
      type: "array",
      items: {
        type: "object",
        additionalProperties: false,
        required: ["status", "at", "by"],
        properties: {
          status: STATUS,
          at: { type: "integer" },
          by: { type: ["string", "null"] },
          note: { type: "string" },
        },
      },
    },
  },
} as const;

export const alertListSchema = {
  type: "object",
  additionalProperties: false,
  required: ["items", "cursor"],
  properties: { items: { type: "array", items: alertViewSchema }, cursor: { type: ["string", "null"] } },
} as const;

export const alertListQuerySchema = {
  type: "object",
  additionalProperties: false,
  properties: {
    status: { type: "string", enum: ["open", "firing", "acknowledged", "resolved"] },
    ruleId: ID,
    deviceId: ID,
    limit: { type: "string", pattern: "^(?:[1-9][0-9]?|1[0-9]{2}|200)$", description: "1..200" },
    cursor: { type: "string", maxLength: 200 },
  },
  examples: [{ status: "open", limit: "50" }],
} as const;

export const alertParamsSchema = {
  type: "object",
  additionalProperties: false,
  required: ["alertId"],
  properties: { alertId: ID },
  examples: [{ alertId: "alt_Hq3Zr8Ws2Xk5Pn7Vb1Mc4Ld6" }],
} as const;

export const acknowledgeBodySchema = {
  type: "object",
  additionalProperties: false,
  properties: { note: { type: "string", maxLength: 500 } },
  examples: [{ note: "on it" }],
} as const;

export const silenceBodySchema = {
  type: "object",
  additionalProperties: false,
  required: ["endsAt"],
  properties: {
    ruleId: ID,
    deviceId: ID,
    startsAt: { type: "integer", minimum: 0 },
    endsAt: { type: "integer", minimum: 0 },
    comment: { type: "string", maxLength: 500 },
  },
  examples: [{ deviceId: "sim-001", endsAt: 1_893_456_000_000, comment: "maintenance" }],
} as const;

const silenceProperties = {
  silenceId: { type: "string" },
  ruleId: { type: ["string", "null"] },
  deviceId: { type: ["string", "null"] },
  startsAt: { type: "integer" },
  endsAt: { type: "integer" },
  comment: { type: "string" },
  createdBy: { type: "string" },
  createdAt: { type: "integer" },
  active: { type: "boolean" },
} as const;

export const silenceViewSchema = {
  type: "object",
  additionalProperties: false,
  required: Object.keys(silenceProperties),
  properties: silenceProperties,
} as const;

export const silenceListSchema = {
  type: "object",
  additionalProperties: false,
  required: ["items"],
  properties: { items: { type: "array", items: silenceViewSchema } },
} as const;

export const silenceParamsSchema = {
  type: "object",
  additionalProperties: false,
  required: ["silenceId"],
  properties: { silenceId: ID },
  examples: [{ silenceId: "sil_4Tb9Qw2Er7Ty1Ui3" }],
} as const;
