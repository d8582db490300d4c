// The devices API's shapes: JSON schemas and their TypeScript twins. Only type
// imports and the import-free text-schema.ts, so the dashboard can import the types too.

import type { DeviceMode, PluginStatus, ResetReason } from "@kestrel/wire";
import { CURSOR_PATTERN, countPattern, DISPLAY_NAME_PATTERN } from "../http/text-schema.ts";

export interface LatestSample {
  ts: number;
  m: Record<string, number>;
}

export type MetadataValue = string | number | boolean;

export interface DeviceView {
  deviceId: string;
  name: string;
  tags: string[];
  groups: string[];
  metadata: Record<string, MetadataValue>;
  /** Epoch ms, like every time below. */
  createdAt: number;
  online: boolean;
  /** Null until the device is first heard from. */
  lastSeen: number | null;
  fw: string | null;
  boot: number | null;
  reset: ResetReason | null;
  /** "safe" while the device is in boot-loop safe mode (no sampling). */
  mode: DeviceMode | null;
  uptime: number | null;
  heap: number | null;
  rssi: number | null;
  /** Samples the device's offline buffer dropped since it booted. */
  dropped: number | null;
  /** The WebAssembly plugins the device last reported: state, failure reason, calls, errors, budget used. */
  plugins: PluginStatus[];
  latest: LatestSample | null;
}

export interface DeviceList {
  items: DeviceView[];
  /** Pass as `cursor` for the next page; null on the last page. */
  nextCursor: string | null;
}

export interface CreatedDevice {
  device: DeviceView;
  /** The device's MQTT password, shown only in this answer. */
  token: string;
}

export interface DeviceToken {
  deviceId: string;
  token: string;
}

export interface DeviceChanges {
  name?: string;
  tags?: string[];
  groups?: string[];
  metadata?: Record<string, MetadataValue>;
}

export interface CreateDeviceBody extends DeviceChanges {
  deviceId: string;
}

export const DEVICE_SORTS = ["id", "name", "lastSeen"] as const;
export type DeviceSort = (typeof DEVICE_SORTS)[number];

/** The list's query string as it arrives (no coercion): parsed by the devices plugin. */
export interface DeviceListQuery {
  q?: string;
  online?: "true" | "false";
  fw?: string;
  tag?: string;
  group?: string;
  lastSeenBefore?: string;
  lastSeenAfter?: string;
  sort?: DeviceSort;
  order?: "asc" | "desc";
  limit?: string;
  cursor?: string;
}

export const DEVICE_LIMITS = Object.freeze({
  nameLength: 100,
  tags: 20,
  groups: 20,
  /** Tags and groups: letters, digits and `_ . : -`, stored lower-case. */
  labelLength: 32,
  metadataKeys: 32,
  metadataKeyLength: 64,
  metadataValueLength: 256,
  pageSize: 200,
  defaultPageSize: 50,
  queryLength: 64,
} as const);

// Tags and groups are stored lower-case: the API lower-cases what it is given.
const LABEL_PATTERN = "^[A-Za-z0-9][A-Za-z0-9_.:-]*$";
// Nothing is trimmed silently: a name with surrounding spaces (or control characters) is refused.
const NAME_PATTERN = DISPLAY_NAME_PATTERN;
// No `$` and no `.`: metadata keys become MongoDB field names.
export const METADATA_KEY_PATTERN = "^[A-Za-z_][A-Za-z0-9_-]*$";

const nullable = (type: string) => ({ type: [type, "null"] });
const label = { type: "string", maxLength: DEVICE_LIMITS.labelLength, pattern: LABEL_PATTERN } as const;
const deviceIdSchema = { type: "string", pattern: "^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$" } as const;

const changeProperties = {
  name: { type: "string", maxLength: DEVICE_LIMITS.nameLength, pattern: NAME_PATTERN },
  tags: { type: "array", maxItems: DEVICE_LIMITS.tags, items: label },
  groups: { type: "array", maxItems: DEVICE_LIMITS.groups, items: label },
  metadata: {
    type: "object",
    maxProperties: DEVICE_LIMITS.metadataKeys,
    propertyNames: { pattern: METADATA_KEY_PATTERN, maxLength: DEVICE_LIMITS.metadataKeyLength },
    additionalProperties: {
      anyOf: [
        { type: "string", maxLength: DEVICE_LIMITS.metadataValueLength },
        { type: "number" },
        { type: "boolean" },
      ],
    },
  },
} as const;

/** One plugin as a device reports it (DeviceState.plugins). */
export const pluginStatusSchema = {
  type: "object",
  additionalProperties: false,
  required: ["name", "version", "state", "calls", "errors", "fuel"],
  properties: {
    name: { type: "string" },
    version: { type: "string" },
    state: { type: "string", enum: ["enabled", "disabled", "failed"] },
    reason: { type: "string", description: "Why it was refused or stopped (a trap, its execution budget)." },
    previous: { type: "string", description: "The version kept to roll back to." },
    calls: { type: "integer", description: "on_sample calls since the device booted." },
    errors: { type: "integer", description: "Calls that trapped or ran out of budget." },
    fuel: { type: "integer", description: "The most execution budget one call used." },
  },
} as const;

export const deviceViewSchema = {
  type: "object",
  additionalProperties: false,
  required: [
    "deviceId",
    "name",
    "tags",
    "groups",
    "metadata",
    "createdAt",
    "online",
    "lastSeen",
    "fw",
    "boot",
    "reset",
    "mode",
    "uptime",
    "heap",
    "rssi",
    "dropped",
    "plugins",
    "latest",
  ],
  properties: {
    deviceId: { type: "string" },
    name: { type: "string" },
    tags: { type: "array", items: { type: "string" } },
    groups: { type: "array", items: { type: "string" } },
    metadata: changeProperties.metadata,
    createdAt: { type: "integer" },
    online: { type: "boolean" },
    lastSeen: nullable("integer"),
    fw: nullable("string"),
    boot: nullable("integer"),
    reset: nullable("string"),
    mode: { type: ["string", "null"], enum: ["normal", "safe", null] },
    uptime: nullable("integer"),
    heap: nullable("integer"),
    rssi: nullable("integer"),
    dropped: nullable("integer"),
    plugins: {
      type: "array",
      description: "The WebAssembly plugins the device last reported (docs/protocol.md, Plugins).",
      items: pluginStatusSchema,
    },
    latest: {
      type: ["object", "null"],
      additionalProperties: false,
      required: ["ts", "m"],
      properties: {
        ts: { type: "integer" },
        m: { type: "object", additionalProperties: { type: "number" } },
      },
    },
  },
} as const;

export const deviceResponseSchema = { ...deviceViewSchema, description: "The device and the state it last reported." };

export const deviceListSchema = {
  description: "One page of the organization's devices that match, in the requested order.",
  type: "object",
  additionalProperties: false,
  required: ["items", "nextCursor"],
  properties: { items: { type: "array", items: deviceViewSchema }, nextCursor: nullable("string") },
} as const;

export const createdDeviceSchema = {
  description: "The new device; `token` is its MQTT password and is never shown again.",
  type: "object",
  additionalProperties: false,
  required: ["device", "token"],
  properties: { device: deviceViewSchema, token: { type: "string" } },
} as const;

export const deviceTokenSchema = {
  description: "The device's new token, shown only here; the previous one no longer authenticates.",
  type: "object",
  additionalProperties: false,
  required: ["deviceId", "token"],
  properties: { deviceId: { type: "string" }, token: { type: "string" } },
} as const;

export const createDeviceBodySchema = {
  type: "object",
  additionalProperties: false,
  required: ["deviceId"],
  properties: { deviceId: deviceIdSchema, ...changeProperties },
  examples: [
    { deviceId: "press-07", name: "Press 7", tags: ["line-3", "hydraulic"], groups: ["plant-a"] },
    { deviceId: "env-roof", metadata: { floor: 5, vendor: "acme", outdoor: true } },
  ],
} as const;

export const updateDeviceBodySchema = {
  type: "object",
  additionalProperties: false,
  minProperties: 1,
  properties: changeProperties,
  examples: [{ name: "Press 7 (rebuilt)", tags: ["line-3"] }, { metadata: { floor: 4 } }],
} as const;

const epochMs = (description: string) => ({ type: "string", pattern: "^[0-9]{1,15}$", description });

export const deviceListQuerySchema = {
  type: "object",
  additionalProperties: false,
  properties: {
    q: {
      type: "string",
      minLength: 1,
      maxLength: DEVICE_LIMITS.queryLength,
      description: "Prefix of the device id, name or a tag (case-insensitive).",
    },
    online: { type: "string", enum: ["true", "false"] },
    fw: { type: "string", minLength: 1, maxLength: 32, description: "Exact firmware version." },
    tag: { ...label, description: "Devices with this tag (case-insensitive)." },
    group: { ...label, description: "Devices in this group (case-insensitive)." },
    lastSeenBefore: epochMs("Epoch ms: last seen before it; never-seen devices match too."),
    lastSeenAfter: epochMs("Epoch ms: last seen after it."),
    sort: { type: "string", enum: DEVICE_SORTS },
    order: { type: "string", enum: ["asc", "desc"] },
    limit: {
      type: "string",
      pattern: countPattern(DEVICE_LIMITS.pageSize),
      description: `1..${DEVICE_LIMITS.pageSize}, default 50.`,
    },
    cursor: { type: "string", pattern: CURSOR_PATTERN, description: "nextCursor of the page before." },
  },
  examples: [
    { q: "press", online: "true", sort: "name", limit: "20" },
    { tag: "line-3", fw: "1.4.2", lastSeenBefore: "1764403200000", sort: "lastSeen", order: "desc" },
  ],
} as const;
