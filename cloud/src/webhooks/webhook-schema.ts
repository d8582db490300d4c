// The webhooks API's shapes: JSON schemas and their TypeScript twins.

import { EVENT_TYPE_NAMES, EVENT_TYPES, type EventType } from "../events/event-types.ts";
import type { DeliveryAttempt, DeliveryStatus } from "./delivery-store.ts";

export interface CreateEndpointBody {
  url: string;
  events: EventType[];
  description?: string;
  enabled?: boolean;
}

export type UpdateEndpointBody = Partial<CreateEndpointBody>;

export interface EndpointView {
  endpointId: string;
  url: string;
  events: EventType[];
  description: string;
  /** The owner's switch. */
  enabled: boolean;
  /** Set while the endpoint is disabled for sustained failure; enabling it again clears it. */
  disabled: { at: number; reason: string } | null;
  health: {
    lastSuccessAt: number | null;
    lastFailureAt: number | null;
    failingSince: number | null;
    consecutiveFailures: number;
  };
  createdAt: number;
  updatedAt: number;
}

/** The answer to creating an endpoint or rotating its secret: the only time the secret is shown. */
export interface EndpointWithSecret extends EndpointView {
  secret: string;
}

export interface DeliverySummary {
  deliveryId: string;
  eventId: string;
  eventType: EventType;
  status: DeliveryStatus;
  createdAt: number;
  attempts: number;
  lastAttempt: DeliveryAttempt | null;
  nextAttemptAt: number | null;
  succeededAt: number | null;
  deadAt: number | null;
  deadReason: string | null;
}

export interface DeliveryView extends Omit<DeliverySummary, "attempts"> {
  attempts: DeliveryAttempt[];
  /** The event as delivered (the body's JSON). */
  payload: unknown;
}

export interface DeliveryListQuery {
  status?: DeliveryStatus;
  limit?: string;
  cursor?: string;
}

const ENDPOINT_ID = { type: "string", minLength: 1, maxLength: 64, pattern: "^[A-Za-z0-9_-]+$" } as const;
const EVENT_LIST = {
  type: "array",
  minItems: 1,
  maxItems: EVENT_TYPE_NAMES.length,
  uniqueItems: true,
  items: { type: "string", enum: EVENT_TYPE_NAMES },
} as const;
const TIME = { type: ["integer", "null"] } as const;

const endpointFields = {
  url: {
    type: "string",
    minLength: 1,
    maxLength: 2048,
    description: "http(s), no user info, not internal unless WEBHOOK_ALLOWED_NETWORKS allows it",
  },
  events: EVENT_LIST,
  description: { type: "string", maxLength: 200 },
  enabled: { type: "boolean" },
} as const;

export const createEndpointBodySchema = {
  type: "object",
  additionalProperties: false,
  required: ["url", "events"],
  properties: endpointFields,
  examples: [
    { url: "https://partner.example.com/kestrel", events: ["alert.fired", "alert.resolved"], description: "NOC" },
  ],
} as const;

export const updateEndpointBodySchema = {
  type: "object",
  additionalProperties: false,
  minProperties: 1,
  properties: endpointFields,
  examples: [{ events: ["alert.fired", "alert.resolved", "device.offline"], enabled: true }],
} as const;

const endpointViewProperties = {
  endpointId: { type: "string" },
  url: { type: "string" },
  events: { type: "array", items: { type: "string" } },
  description: { type: "string" },
  enabled: { type: "boolean" },
  disabled: {
    type: ["object", "null"],
    additionalProperties: false,
    required: ["at", "reason"],
    properties: { at: { type: "integer" }, reason: { type: "string" } },
  },
  health: {
    type: "object",
    additionalProperties: false,
    required: ["lastSuccessAt", "lastFailureAt", "failingSince", "consecutiveFailures"],
    properties: {
      lastSuccessAt: TIME,
      lastFailureAt: TIME,
      failingSince: TIME,
      consecutiveFailures: { type: "integer" },
    },
  },
  createdAt: { type: "integer" },
  updatedAt: { type: "integer" },
} as const;

export const endpointViewSchema = {
  type: "object",
  additionalProperties: false,
  required: Object.keys(endpointViewProperties),
  properties: endpointViewProperties,
} as const;

export const endpointWithSecretSchema = {
  type: "object",
  additionalProperties: false,
  required: [...Object.keys(endpointViewProperties), "secret"],
  properties: {
    ...endpointViewProperties,
    secret: { type: "string", description: "The signing secret: shown in this answer only." },
  },
} as const;

export const endpointListSchema = {
  type: "object",
  additionalProperties: false,
  required: ["items"],
  properties: { items: { type: "array", items: endpointViewSchema } },
} as const;

export const endpointParamsSchema = {
  type: "object",
  additionalProperties: false,
  required: ["endpointId"],
  properties: { endpointId: ENDPOINT_ID },
  examples: [{ endpointId: "whe_3Yk2mQ8rXs1aB7cD9eF0gH1i" }],
} as const;

export const deliveryParamsSchema = {
  type: "object",
  additionalProperties: false,
  required: ["endpointId", "deliveryId"],
  properties: { endpointId: ENDPOINT_ID, deliveryId: ENDPOINT_ID },
  examples: [{ endpointId: "whe_3Yk2mQ8rXs1aB7cD9eF0gH1i", deliveryId: "dlv_Zq1x9w8v7u6t5s4r3q2p1o0n" }],
} as const;

export const deliveryListQuerySchema = {
  type: "object",
  additionalProperties: false,
  properties: {
    status: { type: "string", enum: ["pending", "succeeded", "dead"] },
    limit: { type: "string", pattern: "^(?:[1-9][0-9]?|1[0-9]{2}|200)$", description: "1..200" },
    cursor: { type: "string", maxLength: 200 },
  },
  examples: [{ status: "dead", limit: "20" }],
} as const;

const attemptSchema = {
  type: "object",
  additionalProperties: false,
  required: ["n", "at", "statusCode", "latencyMs", "snippet", "error"],
  properties: {
    n: { type: "integer" },
    at: { type: "integer" },
    statusCode: { type: ["integer", "null"] },
    latencyMs: { type: "integer" },
    snippet: { type: ["string", "null"], description: "The start of the receiver's answer." },
    error: { type: ["string", "null"] },
  },
} as const;

const deliveryCommon = {
  deliveryId: { type: "string" },
  eventId: { type: "string" },
  eventType: { type: "string" },
  status: { type: "string", enum: ["pending", "succeeded", "dead"] },
  createdAt: { type: "integer" },
  nextAttemptAt: TIME,
  succeededAt: TIME,
  deadAt: TIME,
  deadReason: { type: ["string", "null"] },
} as const;

const deliverySummarySchema = {
  type: "object",
  additionalProperties: false,
  required: [...Object.keys(deliveryCommon), "attempts", "lastAttempt"],
  properties: {
    ...deliveryCommon,
    attempts: { type: "integer" },
    lastAttempt: { oneOf: [attemptSchema, { type: "null" }] },
  },
} as const;

export const deliveryListSchema = {
  type: "object",
  additionalProperties: false,
  required: ["items", "cursor"],
  properties: { items: { type: "array", items: deliverySummarySchema }, cursor: { type: ["string", "null"] } },
} as const;

export const deliveryViewSchema = {
  type: "object",
  additionalProperties: false,
  required: [...Object.keys(deliveryCommon), "attempts", "payload"],
  properties: {
    ...deliveryCommon,
    attempts: { type: "array", items: attemptSchema },
    payload: {
      type: "object",
      additionalProperties: true,
      description: "The event as delivered: the body's JSON, shaped as the `webhookEvent` schema.",
    },
  },
} as const;

export const eventTypeListSchema = {
  type: "object",
  additionalProperties: false,
  required: ["items"],
  properties: {
    items: {
      type: "array",
      items: {
        type: "object",
        additionalProperties: false,
        required: ["type", "description"],
        properties: { type: { type: "string" }, description: { type: "string" } },
      },
    },
  },
} as const;

export function eventTypeList(): { items: Array<{ type: string; description: string }> } {
  return { items: Object.entries(EVENT_TYPES).map(([type, spec]) => ({ type, description: spec.description })) };
}
