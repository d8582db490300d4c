// Commands to devices: operators queue them and follow their status; gateways
// long-poll for the commands of their connected devices and report the devices' acks.

import { type CommandName, isDeviceId, LIMITS, validateCommandAck } from "@kestrel/wire";
import type { FastifyInstance } from "fastify";
import type { Db } from "mongodb";
import { orgOf } from "../auth/access.ts";
import { DeviceStore } from "../devices/device-store.ts";
import { deviceNotFound } from "../devices/plugin.ts";
import { EventPublisher } from "../events/event-publisher.ts";
import { Problem, problemResponses } from "../http/problem.ts";
import { type DeviceIdParams, deviceIdParams } from "../http/schemas.ts";
import { countPattern } from "../http/text-schema.ts";
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

export const MAX_WAIT_SECONDS = 25;
const MAX_POLL_DEVICES = 10_000;
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

interface PollBody {
  devices: string[];
  wait?: number;
  max?: number;
}

/** A device's ack, or what the gateway did with a command it was handed. */
type RelayItem = { deviceId: string; receivedAt: number } & (
  | { ack: unknown; delivery?: undefined }
  | { delivery: { id: string; outcome: DeliveryOutcome } }
);

interface AckBody {
  acks: RelayItem[];
}

export async function commandsPlugin(app: FastifyInstance, options: CommandsOptions): Promise<void> {
  const commands = new CommandStore(options.db, options.leaseMs);
  const events = new EventPublisher(options.db);
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
              limit: {
                type: "string",
                pattern: countPattern(MAX_COMMANDS_LISTED),
                description: `1..${MAX_COMMANDS_LISTED}, default 20.`,
              },
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
        // Up to 10,000 device ids of up to 64 characters: more than the API's default 64 KiB.
        bodyLimit: 1024 * 1024,
        schema: {
          summary: "Long-poll for commands to the gateway's connected devices",
          body: {
            type: "object",
            additionalProperties: false,
            required: ["devices"],
            properties: {
              devices: { type: "array", maxItems: MAX_POLL_DEVICES, items: DEVICE_ID },
              wait: { type: "integer", minimum: 0, maximum: MAX_WAIT_SECONDS },
              max: { type: "integer", minimum: 1, maximum: 100 },
            },
            examples: [{ devices: ["sim-001", "sim-002"], wait: 0, max: 50 }],
          },
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
        const deadline = Date.now() + (request.body.wait ?? 0) * 1000;
        // The gateway gave up on this poll: stop claiming for it (anything claimed already is offered again later).
        const gone = new AbortController();
        reply.raw.once("close", () => gone.abort());
        for (;;) {
          const claimed = connected.size === 0 ? [] : await commands.claim(tenantId, connected, max);
          if (gone.signal.aborted && claimed.length > 0) {
            // Nobody will read this answer: hand the commands back now rather than when their lease runs out.
            const at = new Date();
            for (const { deviceId, command } of claimed) {
              await commands.recordDelivery(tenantId, deviceId, command.id, "not_connected", at);
            }
            request.log.info({ tenantId, count: claimed.length }, "poll aborted: claimed commands released");
            return { commands: [] };
          }
          const remaining = deadline - Date.now();
          if (claimed.length > 0 || remaining <= 0 || gone.signal.aborted || bell.isClosed) {
            if (claimed.length > 0) request.log.info({ tenantId, count: claimed.length }, "commands handed to gateway");
            // The server stopped closing idle connections before this answer: close this one with it.
            if (bell.isClosed) reply.header("connection", "close");
            return { commands: claimed };
          }
          await bell.wait(tenantId, Math.min(remaining, recheckMs), gone.signal);
        }
      },
    );

    gateway.post<{ Body: AckBody }>(
      "/api/gateway/v1/command-acks",
      {
        config: { gateway: true, wireChecked: true },
        // 500 acks, each a small object checked by the wire validator.
        bodyLimit: 1024 * 1024,
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
            200: {
              description: "How many acks were applied, ignored as stale, or rejected.",
              type: "object",
              additionalProperties: false,
              required: ["applied", "ignored", "rejected"],
              properties: {
                applied: { type: "integer" },
                ignored: { type: "integer" },
                rejected: {
                  type: "array",
                  items: {
                    type: "object",
                    additionalProperties: false,
                    required: ["index", "code", "message"],
                    properties: { index: { type: "integer" }, code: { type: "string" }, message: { type: "string" } },
                  },
                },
              },
            },
            ...problemResponses(400, 401),
          },
        },
      },
      async (request) => {
        const tenantId = orgOf(request);
        let applied = 0;
        let ignored = 0;
        const rejected: Array<{ index: number; code: string; message: string }> = [];
        for (const [index, item] of request.body.acks.entries()) {
          if (!isDeviceId(item.deviceId)) {
            rejected.push({ index, code: "invalid_device_id", message: "not a valid device id" });
            continue;
          }
          if (item.delivery) {
            const { id, outcome } = item.delivery;
            if (await commands.recordDelivery(tenantId, item.deviceId, id, outcome, new Date(item.receivedAt)))
              applied++;
            else ignored++;
            continue;
          }
          const parsed = validateCommandAck(item.ack);
          if (!parsed.ok) {
            rejected.push({ index, ...parsed.error });
          } else if (await commands.applyAck(tenantId, item.deviceId, parsed.value, item.receivedAt)) {
            applied++;
            const finished =
              parsed.value.status === "accepted" ? null : await commands.find(tenantId, item.deviceId, parsed.value.id);
            if (finished && (finished.status === "done" || finished.status === "failed")) {
              // Keyed by the command: a finished command never changes again, so this is its one event.
              await events.publish(tenantId, `command.${finished.status}`, `${item.deviceId}|${finished.id}`, {
                deviceId: item.deviceId,
                commandId: finished.id,
                name: finished.name,
                status: finished.status,
                reason: finished.reason ?? null,
                result: finished.result ?? null,
                at: item.receivedAt,
              });
            }
          } else {
            // An ack repeated by a retry, or for a command this tenant never sent: nothing to change.
            ignored++;
          }
        }
        if (rejected.length > 0) request.log.warn({ tenantId, rejected }, `${rejected.length} command acks rejected`);
        return { applied, ignored, rejected };
      },
    );
  });
}
