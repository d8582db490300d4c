// Commands to devices: operators queue them and follow their status; gateways
// long-poll for the commands of their connected devices and report the devices' acks.

import { type CommandAck, type CommandName, isDeviceId, LIMITS, type Parsed, validateCommandAck } from "@kestrel/wire";
import type { FastifyInstance } from "fastify";
import type { Db } from "mongodb";
import { orgOf } from "../auth/access.ts";
import { DeviceStore } from "../devices/device-store.ts";
import { deviceNotFound } from "../devices/plugin.ts";
import { EventPublisher } from "../events/event-publisher.ts";
import { longPoll, POLL_BODY_LIMIT, type PollBody, pollBodySchema } from "../http/long-poll.ts";
import { Problem, problemResponses } from "../http/problem.ts";
import { applyRelayed, RELAYED_BODY_LIMIT, relayResultSchema } from "../http/relayed.ts";
import { type DeviceIdParams, deviceIdParams } from "../http/schemas.ts";
import { limitParameter } from "../http/text-schema.ts";
import { CommandBell } from "./command-bell.ts";
import {
  type CommandDoc,
  CommandStore,
  type DeliveryOutcome,
  effectiveStatus,
  MAX_COMMANDS_LISTED,
} from "./command-store.ts";
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
const DEVICE_ID = { type: "string", minLength: 1, maxLength: LIMITS.deviceIdLength } as const;

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
    late: doc.late
      ? {
          status: doc.late.status,
          at: doc.late.at.getTime(),
          reason: doc.late.reason ?? null,
          result: doc.late.result ?? null,
        }
      : null,
    history,
  };
}

interface CommandParams extends DeviceIdParams {
  commandId: string;
}

/** A device's ack, or what the gateway did with a command it was handed. */
type RelayItem = { deviceId: string; receivedAt: number } & (
  | { ack: unknown; delivery?: undefined }
  | { delivery: { id: string; outcome: DeliveryOutcome } }
);

interface AckBody {
  acks: RelayItem[];
}

/** A relayed item once checked: a delivery report, or a valid ack. */
type Relayed =
  | { delivery: { id: string; outcome: DeliveryOutcome }; ack?: undefined }
  | { ack: CommandAck; delivery?: undefined };

export async function commandsPlugin(app: FastifyInstance, options: CommandsOptions): Promise<void> {
  const commands = new CommandStore(options.db, options.leaseMs);
  const events = new EventPublisher(options.db);
  const devices = new DeviceStore(options.db);
  const bell = new CommandBell();
  const recheckMs = options.recheckMs ?? 1000;

  /** Applies a device's ack; a command it finishes publishes its one `command.done`/`command.failed` event. */
  const applyAck = async (tenantId: string, deviceId: string, ack: CommandAck, receivedAt: number) => {
    if (!(await commands.applyAck(tenantId, deviceId, ack, receivedAt))) return false;
    const finished = ack.status === "accepted" ? null : await commands.find(tenantId, deviceId, ack.id);
    if (finished && (finished.status === "done" || finished.status === "failed")) {
      // Keyed by the command: a finished command never changes again, so this is its one event.
      await events.publish(tenantId, `command.${finished.status}`, `${deviceId}|${finished.id}`, {
        deviceId,
        commandId: finished.id,
        name: finished.name,
        status: finished.status,
        reason: finished.reason ?? null,
        result: finished.result ?? null,
        at: receivedAt,
      });
    }
    return true;
  };
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
          summary: "Queue a command for a device",
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
          summary: "A device's latest commands, newest first",
          params: deviceIdParams,
          querystring: {
            type: "object",
            additionalProperties: false,
            properties: {
              limit: limitParameter(MAX_COMMANDS_LISTED, 20),
            },
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
        const now = Date.now();
        return { items: (await commands.list(tenantId, deviceId, limit)).map((doc) => toCommandView(doc, now)) };
      },
    );

    operator.get<{ Params: CommandParams }>(
      "/api/devices/:deviceId/commands/:commandId",
      {
        config: { permission: "commands:read" },
        schema: {
          summary: "One command with its status history",
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
        bodyLimit: POLL_BODY_LIMIT,
        schema: {
          summary: "Long-poll for commands to the gateway's connected devices",
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
        const claimed = await longPoll({
          tenantId,
          waitSeconds: request.body.wait ?? 0,
          recheckMs,
          bell,
          reply,
          take: () => (connected.size === 0 ? Promise.resolve([]) : commands.claim(tenantId, connected, max)),
          // Nobody will read this answer: hand the commands back now rather than when their lease runs out.
          release: async (claimed) => {
            const at = new Date();
            for (const { deviceId, command } of claimed) {
              await commands.recordDelivery(tenantId, deviceId, command.id, "not_connected", at);
            }
            request.log.info({ tenantId, count: claimed.length }, "poll aborted: claimed commands released");
          },
        });
        if (claimed.length > 0) request.log.info({ tenantId, count: claimed.length }, "commands handed to gateway");
        return { commands: claimed };
      },
    );

    gateway.post<{ Body: AckBody }>(
      "/api/gateway/v1/command-acks",
      {
        config: { gateway: true, wireChecked: true },
        bodyLimit: RELAYED_BODY_LIMIT,
        schema: {
          summary: "Relay devices' command acks and the gateway's delivery reports",
          body: {
            type: "object",
            additionalProperties: false,
            required: ["acks"],
            properties: {
              acks: {
                type: "array",
                maxItems: MAX_ACKS,
                items: {
                  type: "object",
                  additionalProperties: false,
                  required: ["deviceId", "receivedAt"],
                  // Either a device's ack, or the gateway's report of what it did with a command.
                  oneOf: [{ required: ["ack"] }, { required: ["delivery"] }],
                  properties: {
                    deviceId: DEVICE_ID,
                    receivedAt: { type: "integer", minimum: 0, maximum: 8_640_000_000_000_000 },
                    // Checked per item by the wire contract's validator.
                    ack: { type: "object" },
                    delivery: {
                      type: "object",
                      additionalProperties: false,
                      required: ["id", "outcome"],
                      properties: {
                        id: { type: "string", pattern: "^[A-Za-z0-9_-]{1,64}$" },
                        outcome: { type: "string", enum: ["published", "not_connected", "connection_lost"] },
                      },
                    },
                  },
                },
              },
            },
            examples: [
              {
                acks: [
                  {
                    deviceId: "sim-001",
                    receivedAt: 1_767_225_600_000,
                    delivery: { id: "c1b2c3d4", outcome: "published" },
                  },
                  { deviceId: "sim-001", receivedAt: 1_767_225_600_120, ack: { v: 1, id: "c1b2c3d4", status: "done" } },
                ],
              },
            ],
          },
          response: {
            200: relayResultSchema("How many acks were applied, ignored as stale, or rejected."),
            ...problemResponses(400, 401),
          },
        },
      },
      async (request) => {
        const tenantId = orgOf(request);
        // An ack repeated by a retry, a report for a command already settled, or either for a command
        // this tenant never sent, changes nothing: ignored.
        const result = await applyRelayed(
          request.body.acks,
          (item): Parsed<Relayed> => {
            if (item.delivery) return { ok: true, value: { delivery: item.delivery } };
            const parsed = validateCommandAck(item.ack);
            return parsed.ok ? { ok: true, value: { ack: parsed.value } } : parsed;
          },
          (item, relayed) =>
            relayed.delivery
              ? commands.recordDelivery(
                  tenantId,
                  item.deviceId,
                  relayed.delivery.id,
                  relayed.delivery.outcome,
                  new Date(item.receivedAt),
                )
              : applyAck(tenantId, item.deviceId, relayed.ack, item.receivedAt),
        );
        if (result.rejected.length > 0)
          request.log.warn({ tenantId, rejected: result.rejected }, `${result.rejected.length} command acks rejected`);
        return result;
      },
    );
  });
}
