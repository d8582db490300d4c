// The organization's devices: create (the token is shown once), list with
// search, filters and keyset paging, read, change labels, delete, rotate the
// token. Every query is scoped to the caller's organization; another
// organization's device answers 404.

import type { FastifyInstance } from "fastify";
import type { Db } from "mongodb";
import { orgOf } from "../auth/access.ts";
import { newSecret, secretHash } from "../auth/secrets.ts";
import { Problem, problemResponses } from "../http/problem.ts";
import { type DeviceIdParams, deviceIdParams } from "../http/schemas.ts";
import { type DeviceSearch, decodeCursor, encodeCursor } from "./device-query.ts";
import { type DeviceDoc, DeviceStore, NEVER_SEEN, searchKey } from "./device-store.ts";
import {
  type CreateDeviceBody,
  type CreatedDevice,
  createDeviceBodySchema,
  createdDeviceSchema,
  DEVICE_LIMITS,
  type DeviceChanges,
  type DeviceList,
  type DeviceListQuery,
  type DeviceToken,
  type DeviceView,
  deviceListQuerySchema,
  deviceListSchema,
  deviceResponseSchema,
  deviceTokenSchema,
  updateDeviceBodySchema,
} from "./device-view.ts";

export interface DevicesOptions {
  db: Db;
}

/** The one answer for a device that is missing or belongs to another organization. */
export function deviceNotFound(deviceId: string): Problem {
  return new Problem(404, "device_not_found", `no device ${deviceId} in this tenant`);
}

export function toDeviceView(doc: DeviceDoc): DeviceView {
  return {
    deviceId: doc.deviceId,
    name: doc.name,
    tags: doc.tags ?? [],
    groups: doc.groups ?? [],
    metadata: doc.metadata ?? {},
    createdAt: doc.createdAt.getTime(),
    online: doc.online,
    lastSeen: doc.lastSeen && doc.lastSeen > NEVER_SEEN ? doc.lastSeen.getTime() : null,
    fw: doc.fw ?? null,
    boot: doc.boot ?? null,
    reset: doc.reset ?? null,
    mode: doc.mode ?? null,
    uptime: doc.uptime ?? null,
    heap: doc.heap ?? null,
    rssi: doc.rssi ?? null,
    dropped: doc.dropped ?? null,
    plugins: doc.plugins ?? [],
    latest: doc.latest ?? null,
  };
}

/** Labels are stored lower-case and once each, so they match case-insensitively. */
function normaliseChanges(changes: DeviceChanges): DeviceChanges {
  const labels = (values: string[]) => [...new Set(values.map((value) => value.toLowerCase()))];
  return {
    ...changes,
    ...(changes.tags && { tags: labels(changes.tags) }),
    ...(changes.groups && { groups: labels(changes.groups) }),
  };
}

function epochMs(text: string | undefined): number | undefined {
  return text === undefined ? undefined : Number(text);
}

function toSearch(query: DeviceListQuery): DeviceSearch {
  const limit = Number(query.limit ?? DEVICE_LIMITS.defaultPageSize);
  if (limit < 1 || limit > DEVICE_LIMITS.pageSize) {
    throw new Problem(400, "invalid_request", `limit must be 1..${DEVICE_LIMITS.pageSize}`);
  }
  const q = query.q === undefined ? undefined : searchKey(query.q);
  if (q === "") throw new Problem(400, "invalid_request", "q must not be blank");
  const search: DeviceSearch = {
    sort: query.sort ?? "id",
    order: query.order ?? "asc",
    limit,
    ...(q !== undefined && { q }),
    ...(query.online !== undefined && { online: query.online === "true" }),
    ...(query.fw !== undefined && { fw: query.fw }),
    ...(query.tag !== undefined && { tag: query.tag.toLowerCase() }),
    ...(query.group !== undefined && { group: query.group.toLowerCase() }),
  };
  const before = epochMs(query.lastSeenBefore);
  const after = epochMs(query.lastSeenAfter);
  if (before !== undefined) search.lastSeenBefore = before;
  if (after !== undefined) search.lastSeenAfter = after;
  if (query.cursor !== undefined) search.after = decodeCursor(query.cursor, search);
  return search;
}

export async function devicesPlugin(app: FastifyInstance, options: DevicesOptions): Promise<void> {
  const devices = new DeviceStore(options.db);

  app.get<{ Querystring: DeviceListQuery }>(
    "/api/devices",
    {
      config: { permission: "devices:read" },
      schema: {
        summary: "Search and filter the organization's devices, one page at a time",
        querystring: deviceListQuerySchema,
        response: { 200: deviceListSchema, ...problemResponses(400, 401, 403) },
      },
    },
    async (request): Promise<DeviceList> => {
      const search = toSearch(request.query);
      const { items, endedAt } = await devices.search(orgOf(request), search);
      return { items: items.map(toDeviceView), nextCursor: endedAt ? encodeCursor(search, endedAt) : null };
    },
  );

  app.post<{ Body: CreateDeviceBody }>(
    "/api/devices",
    {
      config: { permission: "devices:write" },
      schema: {
        summary: "Add a device; its token (MQTT password) is in this answer only",
        body: createDeviceBodySchema,
        response: { 201: createdDeviceSchema, ...problemResponses(400, 401, 403, 409) },
      },
    },
    async (request, reply): Promise<CreatedDevice> => {
      const tenantId = orgOf(request);
      const { deviceId, ...changes } = request.body;
      const token = newSecret();
      const doc = await devices.create(tenantId, deviceId, normaliseChanges(changes), secretHash(token));
      if (!doc) throw new Problem(409, "device_exists", `device ${deviceId} exists already`);
      request.log.info({ tenantId, deviceId }, "device created");
      reply.code(201);
      return { device: toDeviceView(doc), token };
    },
  );

  app.get<{ Params: DeviceIdParams }>(
    "/api/devices/:deviceId",
    {
      config: { permission: "devices:read" },
      schema: {
        summary: "A device with the state it last reported",
        params: deviceIdParams,
        response: { 200: deviceResponseSchema, ...problemResponses(400, 401, 403, 404) },
      },
    },
    async (request): Promise<DeviceView> => {
      const doc = await devices.find(orgOf(request), request.params.deviceId);
      if (!doc) throw deviceNotFound(request.params.deviceId);
      return toDeviceView(doc);
    },
  );

  app.patch<{ Params: DeviceIdParams; Body: DeviceChanges }>(
    "/api/devices/:deviceId",
    {
      config: { permission: "devices:write" },
      schema: {
        summary: "Change a device's name, tags, groups or metadata (each given one is replaced whole)",
        params: deviceIdParams,
        body: updateDeviceBodySchema,
        response: { 200: deviceResponseSchema, ...problemResponses(400, 401, 403, 404) },
      },
    },
    async (request): Promise<DeviceView> => {
      const tenantId = orgOf(request);
      const { deviceId } = request.params;
      const doc = await devices.update(tenantId, deviceId, normaliseChanges(request.body));
      if (!doc) throw deviceNotFound(deviceId);
      return toDeviceView(doc);
    },
  );

  app.delete<{ Params: DeviceIdParams }>(
    "/api/devices/:deviceId",
    {
      config: { permission: "devices:write" },
      schema: {
        summary: "Delete a device: its token stops working at once; its telemetry is left to retention",
        params: deviceIdParams,
        response: {
          204: { description: "The device is deleted.", type: "null" },
          ...problemResponses(400, 401, 403, 404),
        },
      },
    },
    async (request, reply) => {
      const tenantId = orgOf(request);
      const { deviceId } = request.params;
      if (!(await devices.remove(tenantId, deviceId))) throw deviceNotFound(deviceId);
      request.log.info({ tenantId, deviceId }, "device deleted");
      return reply.code(204).send();
    },
  );

  app.post<{ Params: DeviceIdParams }>(
    "/api/devices/:deviceId/token",
    {
      config: { permission: "devices:write" },
      schema: {
        summary: "Issue a new device token; the previous one is refused from now on",
        params: deviceIdParams,
        response: { 200: deviceTokenSchema, ...problemResponses(400, 401, 403, 404) },
      },
    },
    async (request): Promise<DeviceToken> => {
      const tenantId = orgOf(request);
      const { deviceId } = request.params;
      const token = newSecret();
      if (!(await devices.replaceToken(tenantId, deviceId, secretHash(token)))) throw deviceNotFound(deviceId);
      request.log.info({ tenantId, deviceId }, "device token rotated");
      return { deviceId, token };
    },
  );
}
