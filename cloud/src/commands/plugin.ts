// Commands to devices: operators queue them and follow their status; gateways
// long-poll for the commands of their connected devices and report the devices' acks.

import { type CommandName, isDeviceId, validateCommandAck } from "@kestrel/wire";
import type { FastifyInstance } from "fastify";
import type { Db } from "mongodb";
import { orgOf } from "../auth/access.ts";
import { DeviceStore } from "../devices/device-store.ts";
import { deviceNotFound } from "../devices/plugin.ts";
import { longPoll, type PollBody, pollBodySchema } from "../http/long-poll.ts";
import { Problem, problemResponses } from "../http/problem.ts";
import { applyRelayed, type RelayedItem, relayedItemsSchema, relayResultSchema } from "../http/relayed.ts";
import { type DeviceIdParams, deviceIdParams } from "../http/schemas.ts";
import { CommandBell } from "./command-bell.ts";
import { type CommandDoc, CommandStore, effectiveStatus, MAX_COMMANDS_LISTED } from "./command-store.ts";
import {
  type CommandList,
  type CommandView,
  commandListSchema,
  commandViewSchema,
  DEFAULT_TTL_SECONDS,
  type NewCommand,
  newCommandSchema,
} from "./command-view.ts";

export interface CommandsOptions {
  db: Db;
  /** How long a handed-out command waits for its device's ack before it is offered again. */
  leaseMs?: number;
  /** How often a waiting long poll looks for commands queued through other replicas. */
  recheckMs?: number;
}

const MAX_ACKS = 500;

function toCommandView(doc: CommandDoc, now: number): CommandView {
  const status = effectiveStatus(doc, now);
  const history = doc.history.map(({ status, at }) => ({ status, at: at.getTime() }));
  // Expiry noticed only on read is shown in the history too, at the moment it happened.
  if (status !== doc.status) history.push({ status, at: doc.expiresAt.getTime() });
  return {
    id: doc.id,
    deviceId: doc.deviceId,
    name: doc.name,
    params: doc.params ?? null,
    status,
    createdAt: doc.createdAt.getTime(),
    updatedAt: Math.max(doc.updatedAt.getTime(), status !== doc.status ? doc.expiresAt.getTime() : 0),
    expiresAt: doc.expiresAt.getTime(),
    reason: doc.reason ?? null,
    result: doc.result ?? null,
    history,
  };
}

interface CommandParams extends DeviceIdParams {
  commandId: string;
}

interface AckBody {
  acks: Array<RelayedItem & { ack: unknown }>;
}

export async function commandsPlugin(app: FastifyInstance, options: CommandsOptions): Promise<void> {
  const commands = new CommandStore(options.db, options.leaseMs);
  const devices = new DeviceStore(options.db);
  const bell = new CommandBell();
  const recheckMs = options.recheckMs ?? 1000;
  // Before the server waits for in-flight requests, so waiting long polls answer at once.
  app.addHook("preClose", async () => bell.close());

  await app.register(async (operator) => {
    const requireDevice = async (tenantId: string, deviceId: string) => {
      if (!(await devices.find(tenantId, deviceId))) throw deviceNotFound(deviceId);
    };

    operator.post<{ Params: DeviceIdParams; Body: NewCommand }>(
      "/api/devices/:deviceId/commands",
      {
        config: { permission: "commands:write" },
        schema: {
          params: deviceIdParams,
          body: newCommandSchema,
          response: {
            202: { ...commandViewSchema, description: "The command, queued for the device's gateway." },
            ...problemResponses(400, 401, 403, 404),
          },
        },
      },
      async (request, reply) => {
        const tenantId = orgOf(request);
        const { deviceId } = request.params;
        await requireDevice(tenantId, deviceId);
        const { name, params, ttlSeconds = DEFAULT_TTL_SECONDS } = request.body;
        const doc = await commands.create(tenantId, deviceId, {
          name: name as CommandName,
          ttlSeconds,
          ...(params === undefined ? {} : { params }),
        });
        request.log.info({ tenantId, deviceId, commandId: doc.id, name }, "command queued");
        bell.ring(tenantId);
        return reply.code(202).send(toCommandView(doc, Date.now()));
      },
    );

    operator.get<{ Params: DeviceIdParams; Querystring: { limit?: string } }>(
      "/api/devices/:deviceId/commands",
      {
        config: { permission: "commands:read" },
        schema: {
          params: deviceIdParams,
          querystring: {
            type: "object",
            additionalProperties: false,
            properties: { limit: { type: "string", pattern: "^[0-9]{1,3}$" } },
            examples: [{ limit: "20" }],
          },
          response: {
            200: { ...commandListSchema, description: "The device's latest commands, newest first." },
            ...problemResponses(400, 401, 403, 404),
          },
        },
      },
      async (request): Promise<CommandList> => {
        const tenantId = orgOf(request);
        const { deviceId } = request.params;
        await requireDevice(tenantId, deviceId);
        const limit = Number(request.query.limit ?? 20);
        if (limit < 1 || limit > MAX_COMMANDS_LISTED)
          throw new Problem(400, "invalid_request", `limit must be 1..${MAX_COMMANDS_LISTED}`);
        const now = Date.now();
        return { items: (await commands.list(tenantId, deviceId, limit)).map((doc) => toCommandView(doc, now)) };
      },
    );

    operator.get<{ Params: CommandParams }>(
      "/api/devices/:deviceId/commands/:commandId",
      {
        config: { permission: "commands:read" },
        schema: {
          params: {
            type: "object",
            additionalProperties: false,
            required: ["deviceId", "commandId"],
            properties: {
              ...deviceIdParams.properties,
              commandId: { type: "string", pattern: "^[A-Za-z0-9_-]{1,64}$" },
            },
            examples: [{ deviceId: "sim-001", commandId: "c1b2c3d4" }],
          },
          response: {
            200: { ...commandViewSchema, description: "The command and its status history." },
            ...problemResponses(400, 401, 403, 404),
          },
        },
      },
      async (request): Promise<CommandView> => {
        const tenantId = orgOf(request);
        const { deviceId, commandId } = request.params;
        const doc = await commands.find(tenantId, deviceId, commandId);
        if (!doc) throw new Problem(404, "command_not_found", `no command ${commandId} for device ${deviceId}`);
        return toCommandView(doc, Date.now());
      },
    );
  });

  await app.register(async (gateway) => {
    gateway.post<{ Body: PollBody }>(
      "/api/gateway/v1/commands/poll",
      {
        config: { gateway: true },
        schema: {
          body: pollBodySchema(100),
          response: {
            200: {
              description: "Commands claimed for the gateway's connected devices (empty when the wait ran out).",
              type: "object",
              additionalProperties: false,
              required: ["commands"],
              properties: {
                commands: {
                  type: "array",
                  items: {
                    type: "object",
                    additionalProperties: false,
                    required: ["deviceId", "command"],
                    properties: {
                      deviceId: { type: "string" },
                      command: {
                        type: "object",
                        additionalProperties: false,
                        required: ["v", "id", "name"],
                        properties: {
                          v: { type: "integer" },
                          id: { type: "string" },
                          name: { type: "string" },
                          params: {
                            type: "object",
                            additionalProperties: {
                              anyOf: [{ type: "string" }, { type: "number" }, { type: "boolean" }],
                            },
                          },
                          expiresAt: { type: "integer" },
                        },
                      },
                    },
                  },
                },
              },
            },
            ...problemResponses(400, 401),
          },
        },
      },
      async (request, reply) => {
        const tenantId = orgOf(request);
        const connected = new Set(request.body.devices.filter(isDeviceId));
        const max = request.body.max ?? 50;
        // Anything claimed for a gateway that gave up meanwhile is offered again after its lease.
        const claimed = await longPoll({
          tenantId,
          waitSeconds: request.body.wait ?? 0,
          recheckMs,
          bell,
          reply,
          take: () => (connected.size === 0 ? Promise.resolve([]) : commands.claim(tenantId, connected, max)),
        });
        if (claimed.length > 0) request.log.info({ tenantId, count: claimed.length }, "commands handed to gateway");
        return { commands: claimed };
      },
    );

    gateway.post<{ Body: AckBody }>(
      "/api/gateway/v1/command-acks",
      {
        config: { gateway: true },
        schema: {
          body: relayedItemsSchema("acks", "ack", MAX_ACKS, { v: 1, id: "c1b2c3d4", status: "done" }),
          response: {
            200: relayResultSchema("How many acks were applied, ignored as stale, or rejected."),
            ...problemResponses(400, 401),
          },
        },
      },
      async (request) => {
        const tenantId = orgOf(request);
        // An ack repeated by a retry, or for a command this tenant never sent, changes nothing: ignored.
        const result = await applyRelayed(
          request.body.acks,
          (item) => validateCommandAck(item.ack),
          (item, ack) => commands.applyAck(tenantId, item.deviceId, ack, item.receivedAt),
        );
        if (result.rejected.length > 0)
          request.log.warn({ tenantId, rejected: result.rejected }, `${result.rejected.length} command acks rejected`);
        return result;
      },
    );
  });
}
