// OTA campaigns: operators create, watch, pause, resume, cancel and advance staged rollouts of a
// signed artifact; gateways long-poll for the offers of their connected devices and relay the
// devices' status reports. A runner (one replica at a time, by lease) soaks and advances stages.

import { isDeviceId, LIMITS } from "@kestrel/wire";
import { validateArtifactStatusReport } from "@kestrel/wire/artifacts";
import type { FastifyInstance } from "fastify";
import type { Db } from "mongodb";
import { ArtifactRegistry } from "../artifacts/artifact-registry.ts";
import { actorOf, orgOf, principalOf } from "../auth/access.ts";
import type { SecretBox } from "../auth/secret-box.ts";
import { CommandBell } from "../commands/command-bell.ts";
import { longPoll, POLL_BODY_LIMIT, type PollBody, pollBodySchema } from "../http/long-poll.ts";
import { problemResponses } from "../http/problem.ts";
import {
  applyRelayed,
  RELAYED_BODY_LIMIT,
  type RelayedItem,
  relayedItemsSchema,
  relayResultSchema,
} from "../http/relayed.ts";
import { limitParameter } from "../http/text-schema.ts";
import { SlotLease } from "../retention/lease.ts";
import { MAX_HISTORY_LISTED } from "./campaign-history.ts";
import {
  type CampaignDeviceView,
  type CampaignView,
  campaignDeviceSchema,
  campaignIdParamsSchema,
  campaignViewSchema,
  historySchema,
  newCampaignSchema,
  ROLLOUT_STATUSES,
  type StageState,
} from "./campaign-schema.ts";
import { type CampaignRequest, CampaignService } from "./campaign-service.ts";
import { type CampaignDeviceDoc, type CampaignDoc, MAX_CAMPAIGNS_LISTED } from "./campaign-store.ts";
import type { DeviceRolloutStatus } from "./rollout.ts";

export interface OtaOptions {
  db: Db;
  secrets: SecretBox;
  artifactMaxBytes: number;
  /** How often the runner looks at running campaigns (soak, advance, stalled devices). */
  tickMs: number;
  /** An offer with no report for this long is made again. */
  offerLeaseMs: number;
  /** How often a waiting offer poll looks for offers made through other replicas. */
  recheckMs?: number;
}

const MAX_REPORTS = 500;
const DEVICE_ID = { type: "string", minLength: 1, maxLength: LIMITS.deviceIdLength } as const;
/** Lease slot of the rollout runner: one replica advances stages at a time. */
const RUNNER_SLOT_MS = 30_000;

type Counts = Partial<Record<DeviceRolloutStatus, number>>;

function countByStatus(devices: CampaignDeviceDoc[]): Counts {
  const counts: Counts = {};
  for (const device of devices) counts[device.status] = (counts[device.status] ?? 0) + 1;
  return counts;
}

function stageState(campaign: CampaignDoc, index: number): StageState {
  if (index < campaign.stage || campaign.status === "completed") return "done";
  if (index > campaign.stage) return "waiting";
  return campaign.stageDoneAt ? "soaking" : "running";
}

function toCampaignView(campaign: CampaignDoc, devices: CampaignDeviceDoc[]): CampaignView {
  return {
    campaignId: campaign.campaignId,
    name: campaign.name,
    artifactId: campaign.artifactId,
    kind: campaign.kind,
    version: campaign.version,
    sha256: campaign.sha256,
    status: campaign.status,
    haltReason: campaign.haltReason ?? null,
    stage: campaign.stage,
    stageStartedAt: campaign.stageStartedAt.getTime(),
    stageDoneAt: campaign.stageDoneAt?.getTime() ?? null,
    stages: campaign.stages.map((stage, index) => ({
      index,
      percent: stage.percent,
      soakSeconds: stage.soakSeconds,
      devices: campaign.stageSizes[index] ?? 0,
      state: stageState(campaign, index),
      counts: countByStatus(devices.filter((device) => device.stage === index)),
    })),
    deviceCount: campaign.deviceCount,
    counts: countByStatus(devices),
    target: campaign.target,
    thresholds: campaign.thresholds,
    startWindowSeconds: campaign.startWindowSeconds,
    deviceTimeoutSeconds: campaign.deviceTimeoutSeconds,
    allowDowngrade: campaign.allowDowngrade,
    autoAdvance: campaign.autoAdvance,
    createdBy: campaign.createdBy,
    createdAt: campaign.createdAt.getTime(),
    updatedAt: campaign.updatedAt.getTime(),
  };
}

function toDeviceView(device: CampaignDeviceDoc): CampaignDeviceView {
  return {
    deviceId: device.deviceId,
    stage: device.stage,
    status: device.status,
    bytes: device.bytes ?? null,
    total: device.total ?? null,
    code: device.code ?? null,
    reason: device.reason ?? null,
    running: device.running ?? null,
    offers: device.offers,
    updatedAt: device.updatedAt.getTime(),
  };
}

interface CampaignParams {
  campaignId: string;
}

export async function otaPlugin(app: FastifyInstance, options: OtaOptions): Promise<void> {
  const registry = new ArtifactRegistry(options.db, options.secrets, options.artifactMaxBytes);
  const campaigns = new CampaignService(options.db, registry, { offerLeaseMs: options.offerLeaseMs });
  const bell = new CommandBell();
  const recheckMs = options.recheckMs ?? 1000;
  const lease = new SlotLease(options.db, "ota-campaigns", RUNNER_SLOT_MS);
  let ticking = false;
  const timer = setInterval(() => {
    if (ticking) return;
    ticking = true;
    lease
      .acquire(options.tickMs)
      .then(async (held) => {
        if (held) await campaigns.tick();
      })
      .catch((error: unknown) => app.log.error({ err: error }, "campaign rollout pass failed"))
      .finally(() => {
        ticking = false;
      });
  }, options.tickMs);
  timer.unref();
  app.addHook("preClose", async () => bell.close());
  app.addHook("onClose", async () => clearInterval(timer));

  const view = async (campaign: CampaignDoc) =>
    toCampaignView(campaign, await campaigns.store.devicesOf(campaign.tenantId, campaign.campaignId));

  app.post<{ Body: CampaignRequest }>(
    "/api/campaigns",
    {
      config: { permission: "campaigns:write" },
      schema: {
        summary: "Roll a signed artifact out to devices (by id, tag or group) in stages",
        body: newCampaignSchema,
        response: {
          201: { ...campaignViewSchema, description: "The campaign, running from its first stage." },
          ...problemResponses(400, 401, 403, 404, 409),
        },
      },
    },
    async (request, reply) => {
      const tenantId = orgOf(request);
      const campaign = await campaigns.create(tenantId, request.body, actorOf(principalOf(request)));
      request.log.info(
        { tenantId, campaignId: campaign.campaignId, devices: campaign.deviceCount, artifactId: campaign.artifactId },
        "campaign created",
      );
      bell.ring(tenantId);
      return reply.code(201).send(await view(campaign));
    },
  );

  app.get<{ Querystring: { limit?: string } }>(
    "/api/campaigns",
    {
      config: { permission: "campaigns:read" },
      schema: {
        summary: "The organization's campaigns, newest first",
        querystring: {
          type: "object",
          additionalProperties: false,
          properties: {
            limit: limitParameter(MAX_CAMPAIGNS_LISTED, 20),
          },
          examples: [{ limit: "20" }],
        },
        response: {
          200: {
            description: "Campaigns with their per-stage progress.",
            type: "object",
            additionalProperties: false,
            required: ["items"],
            properties: { items: { type: "array", items: campaignViewSchema } },
          },
          ...problemResponses(400, 401, 403),
        },
      },
    },
    async (request) => {
      const list = await campaigns.store.list(orgOf(request), Number(request.query.limit ?? 20));
      return { items: await Promise.all(list.map(view)) };
    },
  );

  app.get<{ Params: CampaignParams }>(
    "/api/campaigns/:campaignId",
    {
      config: { permission: "campaigns:read" },
      schema: {
        summary: "A campaign with its per-stage table",
        params: campaignIdParamsSchema,
        response: {
          200: { ...campaignViewSchema, description: "The campaign and where each stage stands." },
          ...problemResponses(400, 401, 403, 404),
        },
      },
    },
    async (request) => view(await campaigns.require(orgOf(request), request.params.campaignId)),
  );

  app.get<{ Params: CampaignParams; Querystring: { status?: DeviceRolloutStatus } }>(
    "/api/campaigns/:campaignId/devices",
    {
      config: { permission: "campaigns:read" },
      schema: {
        summary: "Where each device of a campaign stands",
        params: campaignIdParamsSchema,
        querystring: {
          type: "object",
          additionalProperties: false,
          properties: { status: { type: "string", enum: ROLLOUT_STATUSES } },
          examples: [{ status: "failed" }],
        },
        response: {
          200: {
            description: "The campaign's devices by id.",
            type: "object",
            additionalProperties: false,
            required: ["items"],
            properties: { items: { type: "array", items: campaignDeviceSchema } },
          },
          ...problemResponses(400, 401, 403, 404),
        },
      },
    },
    async (request) => {
      const campaign = await campaigns.require(orgOf(request), request.params.campaignId);
      const { status } = request.query;
      const devices = await campaigns.store.devicesOf(campaign.tenantId, campaign.campaignId);
      return { items: devices.filter((device) => !status || device.status === status).map(toDeviceView) };
    },
  );

  app.get<{ Params: CampaignParams; Querystring: { deviceId?: string; limit?: string } }>(
    "/api/campaigns/:campaignId/history",
    {
      config: { permission: "campaigns:read" },
      schema: {
        summary: "Every transition of the campaign and its devices, oldest first",
        params: campaignIdParamsSchema,
        querystring: {
          type: "object",
          additionalProperties: false,
          properties: {
            deviceId: DEVICE_ID,
            limit: limitParameter(MAX_HISTORY_LISTED, MAX_HISTORY_LISTED),
          },
          examples: [{ deviceId: "sim-001", limit: "100" }],
        },
        response: { 200: historySchema, ...problemResponses(400, 401, 403, 404) },
      },
    },
    async (request) => {
      const campaign = await campaigns.require(orgOf(request), request.params.campaignId);
      const { deviceId, limit = "1000" } = request.query;
      const items = await campaigns.history.list(campaign.tenantId, campaign.campaignId, {
        limit: Number(limit),
        ...(deviceId ? { deviceId } : {}),
      });
      return {
        items: items.map(({ at, deviceId: device, from, to, detail, code }) => ({
          at: at.getTime(),
          from,
          to,
          ...(device === undefined ? {} : { deviceId: device }),
          ...(detail === undefined ? {} : { detail }),
          ...(code === undefined ? {} : { code }),
        })),
      };
    },
  );

  const controls = [
    ["pause", "Pause: no new offers (devices already offered finish)", campaigns.pause],
    ["resume", "Resume a paused or halted campaign (a halt's counts start over)", campaigns.resume],
    ["cancel", "Cancel: no more offers, the devices are free for another campaign", campaigns.cancel],
    ["advance", "Start the next stage now, without waiting for the soak", campaigns.advance],
  ] as const;
  for (const [action, summary, apply] of controls) {
    app.post<{ Params: CampaignParams }>(
      `/api/campaigns/:campaignId/${action}`,
      {
        config: { permission: "campaigns:write" },
        schema: {
          summary,
          params: campaignIdParamsSchema,
          response: {
            200: { ...campaignViewSchema, description: "The campaign after the change." },
            ...problemResponses(400, 401, 403, 404, 409),
          },
        },
      },
      async (request) => {
        const tenantId = orgOf(request);
        const campaign = await campaigns.require(tenantId, request.params.campaignId);
        const changed = await apply.call(campaigns, campaign, actorOf(principalOf(request)));
        request.log.info({ tenantId, campaignId: campaign.campaignId, action }, "campaign changed");
        bell.ring(tenantId);
        return view(changed);
      },
    );
  }

  app.post<{ Body: PollBody }>(
    "/api/gateway/v1/artifacts/offers/poll",
    {
      config: { gateway: true },
      bodyLimit: POLL_BODY_LIMIT,
      schema: {
        summary: "A gateway long-polls for artifact offers to its connected devices",
        body: pollBodySchema(200),
        response: {
          200: {
            description: "Offers to publish on d/{deviceId}/artifact (empty when the wait ran out).",
            type: "object",
            additionalProperties: false,
            required: ["offers"],
            properties: {
              offers: {
                type: "array",
                items: {
                  type: "object",
                  additionalProperties: false,
                  required: ["deviceId", "offer"],
                  // The offer's shape is the wire contract's (validateArtifactOffer).
                  properties: { deviceId: { type: "string" }, offer: { type: "object", additionalProperties: true } },
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
      const offers = await longPoll({
        tenantId,
        waitSeconds: request.body.wait ?? 0,
        recheckMs,
        bell,
        reply,
        take: () =>
          connected.size === 0 ? Promise.resolve([]) : campaigns.offers(tenantId, connected, request.body.max ?? 50),
      });
      if (offers.length > 0) request.log.info({ tenantId, count: offers.length }, "artifact offers handed to gateway");
      return { offers };
    },
  );

  app.post<{ Body: { reports: Array<RelayedItem & { report: unknown }> } }>(
    "/api/gateway/v1/artifact-reports",
    {
      config: { gateway: true, wireChecked: true },
      bodyLimit: RELAYED_BODY_LIMIT,
      schema: {
        summary: "A gateway relays its devices' artifact status reports",
        body: relayedItemsSchema("reports", "report", MAX_REPORTS, {
          v: 1,
          campaign: "cmp_Zt3k9Qm2Lp8xW4vN",
          sha256: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
          status: "downloading",
          bytes: 65_536,
          total: 1_572_864,
        }),
        response: {
          200: relayResultSchema("How many reports were applied, ignored (stale, unknown, final) or rejected."),
          ...problemResponses(400, 401),
        },
      },
    },
    async (request) => {
      const tenantId = orgOf(request);
      const result = await applyRelayed(
        request.body.reports,
        (item) => validateArtifactStatusReport(item.report),
        (item, report) => campaigns.report(tenantId, item.deviceId, report, item.receivedAt),
      );
      if (result.rejected.length > 0)
        request.log.warn(
          { tenantId, rejected: result.rejected },
          `${result.rejected.length} artifact reports rejected`,
        );
      return result;
    },
  );
}
