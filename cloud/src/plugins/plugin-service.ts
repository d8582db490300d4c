// Plugin assignments: a signed plugin version delivered to devices, tags or groups with its config,
// through the artifact pipeline. Each delivery (assign, upgrade, rollback) is an OTA campaign of kind
// plugin, one stage to every device, whose offers carry the assignment's config and enabled state,
// so a device offline when it was assigned gets it when it connects again (within 30 days). Config
// and enable/disable changes reach devices that have it as plugin-* commands (queued while they are
// offline); removal as plugin-remove. The view joins the rollout's reports with what the devices say
// of the plugin in their states (DeviceState.plugins).

import { type CommandName, isPluginConfig, type PluginConfig, pluginMetricName } from "@kestrel/wire";
import { compareSemver } from "@kestrel/wire/artifacts";
import type { Db } from "mongodb";
import type { ArtifactRegistry } from "../artifacts/artifact-registry.ts";
import type { ArtifactDoc } from "../artifacts/artifact-store.ts";
import { CommandStore } from "../commands/command-store.ts";
import { MAX_TTL_SECONDS } from "../commands/command-view.ts";
import { DeviceStore } from "../devices/device-store.ts";
import { Problem } from "../http/problem.ts";
import type { CampaignService } from "../ota/campaign-service.ts";
import type { CampaignDeviceDoc, CampaignDoc } from "../ota/campaign-store.ts";
import {
  type AssignedVersion,
  type AssignmentDoc,
  AssignmentStore,
  assignmentDocId,
  MAX_ASSIGNMENTS,
  newAssignmentId,
} from "./assignment-store.ts";
import type {
  AssignmentView,
  AssignRequest,
  ChangeRequest,
  PluginDeviceView,
  PluginSummary,
  PluginView,
} from "./plugin-schema.ts";

/** A device offline longer than this when a plugin is delivered stops holding the rollout open. */
const DELIVERY_TIMEOUT_SECONDS = 30 * 86_400;
/** Devices listed in a plugin's view; the counts cover them all. */
export const MAX_DEVICES_LISTED = 500;
const UNFINISHED = new Set(["running", "paused", "halted"]);

export class PluginService {
  readonly assignments: AssignmentStore;
  private readonly devices: DeviceStore;
  private readonly commands: CommandStore;

  constructor(
    db: Db,
    private readonly registry: ArtifactRegistry,
    private readonly campaigns: CampaignService,
  ) {
    this.assignments = new AssignmentStore(db);
    this.devices = new DeviceStore(db);
    this.commands = new CommandStore(db);
  }

  async require(tenantId: string, plugin: string, assignmentId: string): Promise<AssignmentDoc> {
    const doc = await this.assignments.find(tenantId, plugin, assignmentId);
    if (!doc) throw new Problem(404, "assignment_not_found", `plugin ${plugin} has no assignment ${assignmentId}`);
    return doc;
  }

  /** The plugin's artifact of that version. */
  private async version(tenantId: string, plugin: string, version: string): Promise<ArtifactDoc> {
    const artifact = (await this.versionsOf(tenantId, plugin)).find((doc) => doc.version === version);
    if (!artifact) throw new Problem(404, "plugin_version_not_found", `no plugin ${plugin} ${version} in the registry`);
    return artifact;
  }

  private versionsOf(tenantId: string, plugin: string): Promise<ArtifactDoc[]> {
    return this.registry.store.list(tenantId, { kind: "plugin", name: plugin }, 200);
  }

  async assign(tenantId: string, plugin: string, request: AssignRequest, actor: string): Promise<AssignmentDoc> {
    const artifact = await this.version(tenantId, plugin, request.version);
    const config = checkedConfig(request.config ?? {});
    const existing = await this.assignments.ofPlugin(tenantId, plugin);
    if (existing.length >= MAX_ASSIGNMENTS)
      throw new Problem(409, "too_many_assignments", `a plugin has at most ${MAX_ASSIGNMENTS} assignments`);
    const deviceIds = await this.campaigns.resolveTarget(tenantId, request.target);
    await this.refuseAssigned(tenantId, existing, new Set(deviceIds));
    const now = new Date();
    const assignmentId = newAssignmentId();
    const doc: AssignmentDoc = {
      _id: assignmentDocId(tenantId, assignmentId),
      tenantId,
      assignmentId,
      plugin,
      artifactId: artifact.artifactId,
      version: artifact.version,
      target: {
        devices: request.target.devices ?? [],
        tags: request.target.tags ?? [],
        groups: request.target.groups ?? [],
      },
      config,
      enabled: request.enabled ?? true,
      campaignId: "",
      createdBy: actor,
      createdAt: now,
      updatedAt: now,
    };
    doc.campaignId = (await this.rollOut(doc, artifact, actor, false)).campaignId;
    await this.assignments.insert(doc);
    return doc;
  }

  /** A device runs one assignment of a plugin: two would fight over its version and config. */
  private async refuseAssigned(tenantId: string, others: AssignmentDoc[], wanted: Set<string>): Promise<void> {
    for (const other of others) {
      const taken = (await this.campaigns.store.devicesOf(tenantId, other.campaignId))
        .map((device) => device.deviceId)
        .filter((deviceId) => wanted.has(deviceId));
      if (taken.length > 0)
        throw new Problem(
          409,
          "devices_assigned",
          `assignment ${other.assignmentId} has ${other.plugin} on ${taken.slice(0, 20).join(", ")} already; change or remove it`,
        );
    }
  }

  /** Delivers `artifact` to the assignment's target (resolved again: new members of a group get it too). */
  private async rollOut(
    assignment: AssignmentDoc,
    artifact: ArtifactDoc,
    actor: string,
    allowDowngrade: boolean,
  ): Promise<CampaignDoc> {
    return this.campaigns.create(
      assignment.tenantId,
      {
        name: `plugin ${assignment.plugin} ${artifact.version}`,
        artifactId: artifact.artifactId,
        target: assignment.target,
        stages: [{ percent: 100, soakSeconds: 0 }],
        startWindowSeconds: 0,
        deviceTimeoutSeconds: DELIVERY_TIMEOUT_SECONDS,
        allowDowngrade,
        plugin: {
          name: assignment.plugin,
          assignmentId: assignment.assignmentId,
          config: assignment.config,
          enabled: assignment.enabled,
        },
      },
      actor,
    );
  }

  /** New config or enabled state: the pending deliveries carry it, devices that have the plugin get commands. */
  async change(assignment: AssignmentDoc, request: ChangeRequest, actor: string): Promise<AssignmentDoc> {
    const config = request.config === undefined ? assignment.config : checkedConfig(request.config);
    const enabled = request.enabled ?? assignment.enabled;
    const campaign = await this.campaigns.store.find(assignment.tenantId, assignment.campaignId);
    if (campaign?.plugin && UNFINISHED.has(campaign.status))
      await this.campaigns.store.update(campaign, {}, { plugin: { ...campaign.plugin, config, enabled } });
    const holders = (await this.rolloutDevices(assignment))
      .filter((device) => device.status === "confirmed" || device.status === "rolled-back")
      .map((device) => device.deviceId);
    const { plugin: name } = assignment;
    if (request.config !== undefined)
      await this.command(assignment.tenantId, holders, "plugin-config", { name, ...config });
    if (enabled !== assignment.enabled)
      await this.command(assignment.tenantId, holders, enabled ? "plugin-enable" : "plugin-disable", { name });
    return this.save(assignment, { config, enabled }, `changed by ${actor}`);
  }

  /** Delivers another version (newer, or older for a rollback) to the assignment's devices. */
  async deliver(assignment: AssignmentDoc, to: AssignedVersion, actor: string): Promise<AssignmentDoc> {
    const artifact = await this.registry.require(assignment.tenantId, to.artifactId);
    await this.endRollout(assignment, actor);
    // Devices install an older version only with the campaign's signed grant.
    const downgrade = compareSemver(artifact.version, assignment.version) < 0;
    const campaign = await this.rollOut(assignment, artifact, actor, downgrade);
    return this.save(
      assignment,
      {
        artifactId: artifact.artifactId,
        version: artifact.version,
        previous: { artifactId: assignment.artifactId, version: assignment.version },
        campaignId: campaign.campaignId,
      },
      `delivery by ${actor}`,
    );
  }

  async upgrade(assignment: AssignmentDoc, version: string, actor: string): Promise<AssignmentDoc> {
    const artifact = await this.version(assignment.tenantId, assignment.plugin, version);
    if (artifact.artifactId === assignment.artifactId)
      throw new Problem(409, "version_assigned", `${assignment.plugin} ${version} is the assigned version already`);
    return this.deliver(assignment, artifact, actor);
  }

  async rollback(assignment: AssignmentDoc, actor: string): Promise<AssignmentDoc> {
    if (!assignment.previous)
      throw new Problem(
        409,
        "no_previous_version",
        `assignment ${assignment.assignmentId} has no version to return to`,
      );
    return this.deliver(assignment, assignment.previous, actor);
  }

  /** The plugin leaves the assignment's devices (plugin-remove, queued for those offline). */
  async remove(assignment: AssignmentDoc, actor: string): Promise<void> {
    await this.endRollout(assignment, actor);
    const deviceIds = (await this.rolloutDevices(assignment)).map((device) => device.deviceId);
    await this.command(assignment.tenantId, deviceIds, "plugin-remove", { name: assignment.plugin });
    await this.assignments.remove(assignment);
  }

  private async endRollout(assignment: AssignmentDoc, actor: string): Promise<void> {
    const campaign = await this.campaigns.store.find(assignment.tenantId, assignment.campaignId);
    if (campaign && UNFINISHED.has(campaign.status)) await this.campaigns.cancel(campaign, actor);
  }

  private rolloutDevices(assignment: AssignmentDoc): Promise<CampaignDeviceDoc[]> {
    return this.campaigns.store.devicesOf(assignment.tenantId, assignment.campaignId);
  }

  private async command(
    tenantId: string,
    deviceIds: string[],
    name: CommandName,
    params: Record<string, string | number>,
  ): Promise<void> {
    // Waiting gateway polls look for new commands every second; offline devices get them when they connect.
    for (const deviceId of deviceIds)
      await this.commands.create(tenantId, deviceId, { name, params, ttlSeconds: MAX_TTL_SECONDS });
  }

  private async save(assignment: AssignmentDoc, set: Partial<AssignmentDoc>, what: string): Promise<AssignmentDoc> {
    if (!(await this.assignments.update(assignment, set)))
      throw new Problem(
        409,
        "assignment_changed",
        `the assignment changed meanwhile (${what} not applied); read it again`,
      );
    return (await this.require(assignment.tenantId, assignment.plugin, assignment.assignmentId)) as AssignmentDoc;
  }

  // --- views -------------------------------------------------------------------------------------

  async assignmentView(doc: AssignmentDoc): Promise<AssignmentView> {
    const campaign = await this.campaigns.store.find(doc.tenantId, doc.campaignId);
    const counts: Record<string, number> = {};
    for (const device of await this.rolloutDevices(doc)) counts[device.status] = (counts[device.status] ?? 0) + 1;
    return {
      assignmentId: doc.assignmentId,
      plugin: doc.plugin,
      version: doc.version,
      artifactId: doc.artifactId,
      previousVersion: doc.previous?.version ?? null,
      target: doc.target,
      config: doc.config,
      enabled: doc.enabled,
      campaignId: doc.campaignId,
      rollout: { status: campaign?.status ?? "cancelled", haltReason: campaign?.haltReason ?? null, counts },
      createdBy: doc.createdBy,
      createdAt: doc.createdAt.getTime(),
      updatedAt: doc.updatedAt.getTime(),
    };
  }

  async view(tenantId: string, plugin: string): Promise<PluginView> {
    const versions = await this.versionsOf(tenantId, plugin);
    const assignments = await this.assignments.ofPlugin(tenantId, plugin);
    if (versions.length === 0 && assignments.length === 0)
      throw new Problem(404, "plugin_not_found", `no plugin ${plugin} in this organization`);
    const totals = { devices: 0, running: 0, disabled: 0, failed: 0, pending: 0, calls: 0, errors: 0 };
    const devices: PluginDeviceView[] = [];
    for (const assignment of assignments) {
      for (const rollout of await this.rolloutDevices(assignment)) {
        const device = await this.devices.find(tenantId, rollout.deviceId);
        const installed = device?.plugins?.find((status) => status.name === plugin) ?? null;
        totals.devices++;
        if (installed) {
          totals.calls += installed.calls;
          totals.errors += installed.errors;
        }
        if (rollout.status === "failed" || rollout.status === "rolled-back" || installed?.state === "failed")
          totals.failed++;
        else if (installed?.version === assignment.version && installed.state === "enabled") totals.running++;
        else if (installed?.version === assignment.version) totals.disabled++;
        else totals.pending++;
        if (devices.length >= MAX_DEVICES_LISTED) continue;
        devices.push({
          deviceId: rollout.deviceId,
          assignmentId: assignment.assignmentId,
          wanted: assignment.version,
          delivery: {
            status: rollout.status,
            code: rollout.code ?? null,
            reason: rollout.reason ?? null,
            running: rollout.running ?? null,
            at: rollout.updatedAt.getTime(),
          },
          installed,
          online: device?.online ?? false,
        });
      }
    }
    const latest = versions[0];
    return {
      name: plugin,
      versions: versions.map((doc) => ({
        artifactId: doc.artifactId,
        version: doc.version,
        sha256: doc.sha256,
        size: doc.size,
        metrics: doc.metrics ?? [],
        signed: doc.signatures.length > 0,
        createdAt: doc.createdAt.getTime(),
      })),
      telemetryMetrics: (latest?.metrics ?? []).map((metric) => pluginMetricName(plugin, metric)),
      assignments: await Promise.all(assignments.map((doc) => this.assignmentView(doc))),
      devices,
      totals,
    };
  }

  async list(tenantId: string): Promise<PluginSummary[]> {
    const byName = new Map<string, PluginSummary>();
    // Newest first: the first version seen of a name is its latest.
    for (const doc of await this.registry.store.list(tenantId, { kind: "plugin" }, 200)) {
      const summary = byName.get(doc.name) ?? {
        name: doc.name,
        latestVersion: doc.version,
        versions: 0,
        assignments: 0,
      };
      summary.versions++;
      byName.set(doc.name, summary);
    }
    for (const assignment of await this.assignments.all(tenantId)) {
      const summary = byName.get(assignment.plugin);
      if (summary) summary.assignments++;
    }
    return [...byName.values()].sort((a, b) => a.name.localeCompare(b.name));
  }
}

/** The config as the device takes it: at most 16 finite numbers by metric-style name; `name` is the command's own. */
function checkedConfig(config: PluginConfig): PluginConfig {
  if (!isPluginConfig(config) || "name" in config)
    throw new Problem(
      400,
      "invalid_config",
      "config maps at most 16 names (a-z 0-9 _, from a letter; not `name`) to finite numbers",
    );
  return config;
}
