// The domain events the platform publishes to partners, one entry each: its name, what it means,
// and the JSON schema of its `data`. This table is the published contract (OpenAPI component
// `webhookEvent`) and the list endpoints subscribe from. Adding an event type is adding one entry
// here, then calling `EventPublisher.publish` where it happens. No runtime imports: the dashboard
// bundle may import the types.

const deviceId = { type: "string", description: "The device's id in its organization." } as const;
const at = { type: "integer", description: "When it happened, epoch ms." } as const;

const alertData = {
  type: "object",
  required: ["alertId", "ruleId", "ruleName", "kind", "severity", "subject", "deviceId", "value", "at"],
  properties: {
    alertId: { type: "string" },
    ruleId: { type: "string" },
    ruleName: { type: "string" },
    kind: { type: "string", description: "The rule's condition kind (threshold, rate, offline, …)." },
    severity: { type: "string", enum: ["info", "warning", "critical"] },
    subject: { type: "string", description: "What the alert is about: a device id, or a system subject." },
    deviceId: { ...deviceId, type: ["string", "null"] },
    metric: { type: ["string", "null"] },
    value: { type: ["number", "null"], description: "The value that changed the state, when there is one." },
    at,
  },
} as const;

const deviceData = {
  type: "object",
  required: ["deviceId", "at"],
  properties: { deviceId, at, reason: { type: "string" } },
} as const;

const commandData = {
  type: "object",
  required: ["deviceId", "commandId", "name", "status", "at"],
  properties: {
    deviceId,
    commandId: { type: "string" },
    name: { type: "string" },
    status: { type: "string", enum: ["done", "failed"] },
    reason: { type: ["string", "null"] },
    result: { type: ["object", "null"] },
    at,
  },
} as const;

const campaignId = { type: "string", description: "The OTA campaign's id." } as const;
const transitionDetail = {
  type: ["string", "null"],
  description: "Why, in words: a halt reason, a device's failure reason, who paused or cancelled.",
} as const;

export const EVENT_TYPES = {
  "alert.fired": { description: "An alert rule's condition held: an alert opened.", data: alertData },
  "alert.resolved": { description: "An open alert's condition cleared.", data: alertData },
  "device.online": { description: "A device connected (its state says online).", data: deviceData },
  "device.offline": {
    description: "A device disconnected or lost power (its last will, or an offline state).",
    data: deviceData,
  },
  "command.done": { description: "A device finished a command.", data: commandData },
  "command.failed": { description: "A device refused or failed a command.", data: commandData },
  "campaign.transition": {
    description:
      "An OTA campaign changed: created (`running`), `paused`, `halted`, `cancelled`, `completed`, or a stage started (`stage-started`) or finished and soaks (`stage-soaking`).",
    data: {
      type: "object",
      required: ["campaignId", "from", "to", "stage", "detail", "at"],
      properties: {
        campaignId,
        from: { type: ["string", "null"], description: "The status before; null for a creation and a stage's start." },
        to: { type: "string" },
        stage: { type: ["integer", "null"], description: "The stage (1-based) a stage event is about." },
        detail: transitionDetail,
        at,
      },
    },
  },
  "campaign.device_transition": {
    description:
      "A device of an OTA campaign changed status: notified, downloading, verifying, installed, rebooting, confirmed, failed or rolled-back.",
    data: {
      type: "object",
      required: ["campaignId", "deviceId", "from", "to", "code", "detail", "at"],
      properties: {
        campaignId,
        deviceId,
        from: { type: "string" },
        to: { type: "string" },
        code: { type: ["string", "null"], description: "The failure code of `failed` and `rolled-back`." },
        detail: transitionDetail,
        at,
      },
    },
  },
  "export.ready": {
    description: "A scheduled export finished: its file is stored, or it was delivered to its webhook.",
    data: {
      type: "object",
      required: ["scheduleId", "runId", "destination", "rows", "at"],
      properties: {
        scheduleId: { type: "string" },
        runId: { type: "string" },
        destination: { type: "string", enum: ["download", "webhook"] },
        rows: { type: "integer" },
        fileUrl: { type: ["string", "null"] },
        at,
      },
    },
  },
  "webhook.endpoint_disabled": {
    description:
      "A webhook endpoint was disabled after failing for too long (sent to the organization's other endpoints).",
    data: {
      type: "object",
      required: ["endpointId", "reason", "at"],
      properties: { endpointId: { type: "string" }, reason: { type: "string" }, at },
    },
  },
} as const;

export type EventType = keyof typeof EVENT_TYPES;

export const EVENT_TYPE_NAMES = Object.keys(EVENT_TYPES) as EventType[];

export function isEventType(name: string): name is EventType {
  return Object.hasOwn(EVENT_TYPES, name);
}

/** What a webhook receives: the envelope around an event's data. */
export interface DomainEvent {
  /** Stable across redeliveries: receivers deduplicate on it. */
  id: string;
  type: EventType;
  /** Epoch ms. */
  createdAt: number;
  /** The organization (tenant id). */
  organization: string;
  data: Record<string, unknown>;
}

/** The envelope of every event type, as one schema (OpenAPI component `webhookEvent`). */
export const webhookEventSchema = {
  $id: "webhookEvent",
  description:
    'The JSON body of every webhook delivery. Signed: `Kestrel-Signature: t=<unix s>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>`.',
  oneOf: Object.entries(EVENT_TYPES).map(([type, spec]) => ({
    type: "object",
    description: spec.description,
    required: ["id", "type", "createdAt", "organization", "data"],
    properties: {
      id: { type: "string", description: "The event's id; the same in every redelivery." },
      type: { const: type },
      createdAt: { type: "integer" },
      organization: { type: "string" },
      data: spec.data,
    },
  })),
} as const;
