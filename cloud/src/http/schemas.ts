// JSON schema fragments shared by several capabilities' routes.

import { LIMITS } from "@kestrel/wire";

/** Route params `{ deviceId }`; the id's exact syntax is the wire contract's. */
export const deviceIdParams = {
  type: "object",
  additionalProperties: false,
  required: ["deviceId"],
  properties: { deviceId: { type: "string", minLength: 1, maxLength: LIMITS.deviceIdLength } },
  examples: [{ deviceId: "sim-001" }],
} as const;

export interface DeviceIdParams {
  deviceId: string;
}
