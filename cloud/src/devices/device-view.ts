// A device as the API shows it: JSON schema and its TypeScript twin. Only type
// imports from the wire contract, so the dashboard can import the types too.

import type { ResetReason } from "@kestrel/wire";

export interface LatestSample {
  ts: number;
  m: Record<string, number>;
}

export interface DeviceView {
  deviceId: string;
  name: string;
  online: boolean;
  /** Epoch ms. */
  lastSeen: number | null;
  fw: string | null;
  boot: number | null;
  reset: ResetReason | null;
  uptime: number | null;
  heap: number | null;
  rssi: number | null;
  latest: LatestSample | null;
}

export interface DeviceList {
  items: DeviceView[];
}

const nullable = (type: string) => ({ type: [type, "null"] });

export const deviceViewSchema = {
  type: "object",
  additionalProperties: false,
  required: ["deviceId", "name", "online", "lastSeen", "fw", "boot", "reset", "uptime", "heap", "rssi", "latest"],
  properties: {
    deviceId: { type: "string" },
    name: { type: "string" },
    online: { type: "boolean" },
    lastSeen: nullable("integer"),
    fw: nullable("string"),
    boot: nullable("integer"),
    reset: nullable("string"),
    uptime: nullable("integer"),
    heap: nullable("integer"),
    rssi: nullable("integer"),
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

export const deviceListSchema = {
  type: "object",
  additionalProperties: false,
  required: ["items"],
  properties: { items: { type: "array", items: deviceViewSchema } },
} as const;
