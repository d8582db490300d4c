// The tenant's devices as operators see them: list and detail, scoped to the
// signed-in user's tenant (another tenant's device is a 404).

import type { FastifyInstance } from "fastify";
import type { Db } from "mongodb";
import { orgOf } from "../auth/access.ts";
import { Problem, problemResponses } from "../http/problem.ts";
import { type DeviceIdParams, deviceIdParams } from "../http/schemas.ts";
import { type DeviceDoc, DeviceStore } from "./device-store.ts";
import { type DeviceList, type DeviceView, deviceListSchema, deviceViewSchema } from "./device-view.ts";

export interface DevicesOptions {
  db: Db;
}

/** The one answer for a device that is missing or belongs to another tenant. */
export function deviceNotFound(deviceId: string): Problem {
  return new Problem(404, "device_not_found", `no device ${deviceId} in this tenant`);
}

function toDeviceView(doc: DeviceDoc): DeviceView {
  return {
    deviceId: doc.deviceId,
    name: doc.name,
    online: doc.online,
    lastSeen: doc.lastSeen?.getTime() ?? null,
    fw: doc.fw ?? null,
    boot: doc.boot ?? null,
    reset: doc.reset ?? null,
    uptime: doc.uptime ?? null,
    heap: doc.heap ?? null,
    rssi: doc.rssi ?? null,
    latest: doc.latest ?? null,
  };
}

export async function devicesPlugin(app: FastifyInstance, options: DevicesOptions): Promise<void> {
  const devices = new DeviceStore(options.db);
  app.get(
    "/api/devices",
    {
      config: { permission: "devices:read" },
      schema: { response: { 200: deviceListSchema, ...problemResponses(401, 403) } },
    },
    async (request): Promise<DeviceList> => {
      const docs = await devices.list(orgOf(request));
      return { items: docs.map(toDeviceView) };
    },
  );

  app.get<{ Params: DeviceIdParams }>(
    "/api/devices/:deviceId",
    {
      config: { permission: "devices:read" },
      schema: { params: deviceIdParams, response: { 200: deviceViewSchema, ...problemResponses(400, 401, 403, 404) } },
    },
    async (request): Promise<DeviceView> => {
      const doc = await devices.find(orgOf(request), request.params.deviceId);
      if (!doc) throw deviceNotFound(request.params.deviceId);
      return toDeviceView(doc);
    },
  );
}
