// WebAssembly plugins: assign a signed plugin version to devices, tags or groups with its config,
// change the config or enable/disable it, upgrade, roll back, remove; and see each device's state of
// it (version, enabled, errors, why it stopped) and the plugin's counters. Uploading and signing are
// the artifact registry's (kind plugin); delivery is an OTA campaign (plugin-service.ts).

import type { FastifyInstance } from "fastify";
import type { Db } from "mongodb";
import { ArtifactRegistry } from "../artifacts/artifact-registry.ts";
import { actorOf, orgOf, principalOf } from "../auth/access.ts";
import type { SecretBox } from "../auth/secret-box.ts";
import { problemResponses } from "../http/problem.ts";
import { CampaignService } from "../ota/campaign-service.ts";
import {
  type AssignmentParams,
  type AssignRequest,
  assignmentParamsSchema,
  assignmentViewSchema,
  assignRequestSchema,
  type ChangeRequest,
  changeRequestSchema,
  type PluginNameParams,
  pluginListSchema,
  pluginNameParamsSchema,
  pluginViewSchema,
  type UpgradeRequest,
  upgradeRequestSchema,
} from "./plugin-schema.ts";
import { PluginService } from "./plugin-service.ts";

export interface PluginsOptions {
  db: Db;
  secrets: SecretBox;
  artifactMaxBytes: number;
  /** An offer with no report for this long is made again (the campaigns' OTA_OFFER_LEASE_MS). */
  offerLeaseMs: number;
}

export async function wasmPluginsPlugin(app: FastifyInstance, options: PluginsOptions): Promise<void> {
  const registry = new ArtifactRegistry(options.db, options.secrets, options.artifactMaxBytes);
  const campaigns = new CampaignService(options.db, registry, { offerLeaseMs: options.offerLeaseMs });
  const plugins = new PluginService(options.db, registry, campaigns);

  app.get(
    "/api/plugins",
    {
      config: { permission: "plugins:read" },
      schema: {
        summary: "The organization's plugins: latest version, versions in the registry, assignments",
        response: { 200: { ...pluginListSchema, description: "Plugins by name." }, ...problemResponses(401, 403) },
      },
    },
    async (request) => ({ items: await plugins.list(orgOf(request)) }),
  );

  app.get<{ Params: PluginNameParams }>(
    "/api/plugins/:name",
    {
      config: { permission: "plugins:read" },
      schema: {
        summary: "One plugin: its versions, assignments, each device's state of it, errors and counters",
        params: pluginNameParamsSchema,
        response: {
          200: { ...pluginViewSchema, description: "The plugin and where it runs." },
          ...problemResponses(400, 401, 403, 404),
        },
      },
    },
    async (request) => plugins.view(orgOf(request), request.params.name),
  );

  app.post<{ Params: PluginNameParams; Body: AssignRequest }>(
    "/api/plugins/:name/assignments",
    {
      config: { permission: "plugins:write" },
      schema: {
        summary: "Assign a signed plugin version to devices, tags or groups, with its config",
        params: pluginNameParamsSchema,
        body: assignRequestSchema,
        response: {
          201: {
            ...assignmentViewSchema,
            description: "The assignment; its rollout offers the plugin to the devices.",
          },
          ...problemResponses(400, 401, 403, 404, 409),
        },
      },
    },
    async (request, reply) => {
      const tenantId = orgOf(request);
      const doc = await plugins.assign(tenantId, request.params.name, request.body, actorOf(principalOf(request)));
      request.log.info(
        {
          tenantId,
          plugin: doc.plugin,
          assignmentId: doc.assignmentId,
          version: doc.version,
          campaignId: doc.campaignId,
        },
        "plugin assigned",
      );
      return reply.code(201).send(await plugins.assignmentView(doc));
    },
  );

  app.patch<{ Params: AssignmentParams; Body: ChangeRequest }>(
    "/api/plugins/:name/assignments/:assignmentId",
    {
      config: { permission: "plugins:write" },
      schema: {
        summary: "Change an assignment's config or enable/disable the plugin on its devices",
        params: assignmentParamsSchema,
        body: changeRequestSchema,
        response: {
          200: { ...assignmentViewSchema, description: "The assignment; devices that have the plugin get commands." },
          ...problemResponses(400, 401, 403, 404, 409),
        },
      },
    },
    async (request) => {
      const { name, assignmentId } = request.params;
      const tenantId = orgOf(request);
      const assignment = await plugins.require(tenantId, name, assignmentId);
      const doc = await plugins.change(assignment, request.body, actorOf(principalOf(request)));
      request.log.info({ tenantId, plugin: name, assignmentId, enabled: doc.enabled }, "plugin assignment changed");
      return plugins.assignmentView(doc);
    },
  );

  app.post<{ Params: AssignmentParams; Body: UpgradeRequest }>(
    "/api/plugins/:name/assignments/:assignmentId/upgrade",
    {
      config: { permission: "plugins:write" },
      schema: {
        summary: "Deliver another version of the plugin to the assignment's devices",
        params: assignmentParamsSchema,
        body: upgradeRequestSchema,
        response: {
          200: { ...assignmentViewSchema, description: "The assignment, with its new rollout." },
          ...problemResponses(400, 401, 403, 404, 409),
        },
      },
    },
    async (request) => {
      const { name, assignmentId } = request.params;
      const tenantId = orgOf(request);
      const assignment = await plugins.require(tenantId, name, assignmentId);
      const doc = await plugins.upgrade(assignment, request.body.version, actorOf(principalOf(request)));
      request.log.info({ tenantId, plugin: name, assignmentId, version: doc.version }, "plugin upgrade started");
      return plugins.assignmentView(doc);
    },
  );

  app.post<{ Params: AssignmentParams }>(
    "/api/plugins/:name/assignments/:assignmentId/rollback",
    {
      config: { permission: "plugins:write" },
      schema: {
        summary: "Deliver the version the assignment ran before its last upgrade (a signed downgrade)",
        params: assignmentParamsSchema,
        response: {
          200: { ...assignmentViewSchema, description: "The assignment, back on its previous version." },
          ...problemResponses(400, 401, 403, 404, 409),
        },
      },
    },
    async (request) => {
      const { name, assignmentId } = request.params;
      const tenantId = orgOf(request);
      const assignment = await plugins.require(tenantId, name, assignmentId);
      const doc = await plugins.rollback(assignment, actorOf(principalOf(request)));
      request.log.info({ tenantId, plugin: name, assignmentId, version: doc.version }, "plugin rollback started");
      return plugins.assignmentView(doc);
    },
  );

  app.delete<{ Params: AssignmentParams }>(
    "/api/plugins/:name/assignments/:assignmentId",
    {
      config: { permission: "plugins:write" },
      schema: {
        summary: "Remove the plugin from the assignment's devices and delete the assignment",
        params: assignmentParamsSchema,
        response: {
          204: { description: "Removed; devices get plugin-remove (queued for those offline).", type: "null" },
          ...problemResponses(400, 401, 403, 404),
        },
      },
    },
    async (request, reply) => {
      const { name, assignmentId } = request.params;
      const tenantId = orgOf(request);
      const assignment = await plugins.require(tenantId, name, assignmentId);
      await plugins.remove(assignment, actorOf(principalOf(request)));
      request.log.info({ tenantId, plugin: name, assignmentId }, "plugin assignment removed");
      return reply.code(204).send();
    },
  );
}
