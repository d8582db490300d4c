// OTA campaigns: an artifact rolled out to a set of devices in stages, each stage soaked before the
// next, halted by itself when a stage fails, rolls back or resets by watchdog too often. Gateways
// take offers for their connected devices and bring back the devices' reports; every status change
// is written through CampaignHistory.record.

import type { ArtifactOffer, ArtifactStatusReport, DowngradeGrant, SignedText } from "@kestrel/wire/artifacts";
import type { Db } from "mongodb";
import type { ArtifactRegistry } from "../artifacts/artifact-registry.ts";
import type { ArtifactDoc } from "../artifacts/artifact-store.ts";
import { DeviceStore } from "../devices/device-store.ts";
import { Problem } from "../http/problem.ts";
import { CampaignHistory } from "./campaign-history.ts";
import {
  type CampaignDeviceDoc,
  type CampaignDoc,
  CampaignStore,
  type CampaignTarget,
  campaignDeviceId,
  campaignDocId,
  newCampaignId,
} from "./campaign-store.ts";
import { ResetLog } from "./reset-log.ts";
import {
  assignStages,
  type DeviceRolloutStatus,
  judgeStage,
  type Stage,
  type StageTally,
  stageFinished,
  TERMINAL,
  type Thresholds,
} from "./rollout.ts";

export interface CampaignRequest {
  name: string;
  artifactId: string;
  target: Partial<CampaignTarget>;
  stages?: Stage[];
  startWindowSeconds?: number;
  deviceTimeoutSeconds?: number;
  thresholds?: Partial<Thresholds>;
  allowDowngrade?: boolean;
  autoAdvance?: boolean;
}

export interface CampaignServiceOptions {
  /** An offer not followed by any report for this long is made again. */
  offerLeaseMs: number;
  now?: () => number;
}

export const DEFAULT_STAGES: readonly Stage[] = Object.freeze([
  { percent: 1, soakSeconds: 3600 },
  { percent: 10, soakSeconds: 3600 },
  { percent: 50, soakSeconds: 3600 },
  { percent: 100, soakSeconds: 0 },
]);
export const DEFAULT_THRESHOLDS: Thresholds = Object.freeze({ failureRate: 0.1, rollbackRate: 0.1, watchdogRate: 0.1 });
export const MAX_CAMPAIGN_DEVICES = 10_000;

export interface DeviceOffer {
  deviceId: string;
  offer: ArtifactOffer;
}

export class CampaignService {
  readonly store: CampaignStore;
  readonly history: CampaignHistory;
  private readonly resets: ResetLog;
  private readonly devices: DeviceStore;
  private readonly now: () => number;

  constructor(
    db: Db,
    private readonly registry: ArtifactRegistry,
    private readonly options: CampaignServiceOptions,
  ) {
    this.store = new CampaignStore(db);
    this.history = new CampaignHistory(db);
    this.resets = new ResetLog(db);
    this.devices = new DeviceStore(db);
    this.now = options.now ?? Date.now;
  }

  async require(tenantId: string, campaignId: string): Promise<CampaignDoc> {
    const campaign = await this.store.find(tenantId, campaignId);
    if (!campaign) throw new Problem(404, "campaign_not_found", `no campaign ${campaignId} in this organization`);
    return campaign;
  }

  async create(tenantId: string, request: CampaignRequest, actor: string): Promise<CampaignDoc> {
    const artifact = await this.registry.require(tenantId, request.artifactId);
    if (artifact.signatures.length === 0)
      throw new Problem(409, "artifact_unsigned", `sign artifact ${artifact.artifactId} before rolling it out`);
    const stages = request.stages ?? [...DEFAULT_STAGES];
    checkStages(stages);
    const deviceIds = await this.resolveTarget(tenantId, request.target);
    await this.refuseBusyDevices(tenantId, artifact, deviceIds);

    const now = new Date(this.now());
    const campaignId = newCampaignId();
    const assigned = assignStages(campaignId, deviceIds, stages);
    const stageSizes = stages.map(() => 0);
    for (const stage of assigned.values()) stageSizes[stage] = (stageSizes[stage] ?? 0) + 1;
    const allowDowngrade = request.allowDowngrade ?? false;
    const campaign: CampaignDoc = {
      _id: campaignDocId(tenantId, campaignId),
      tenantId,
      campaignId,
      name: request.name,
      artifactId: artifact.artifactId,
      kind: artifact.kind,
      sha256: artifact.sha256,
      version: artifact.version,
      target: {
        devices: request.target.devices ?? [],
        tags: request.target.tags ?? [],
        groups: request.target.groups ?? [],
      },
      stages,
      stageSizes,
      deviceCount: deviceIds.length,
      startWindowSeconds: request.startWindowSeconds ?? 300,
      deviceTimeoutSeconds: request.deviceTimeoutSeconds ?? 3600,
      thresholds: { ...DEFAULT_THRESHOLDS, ...request.thresholds },
      allowDowngrade,
      autoAdvance: request.autoAdvance ?? true,
      status: "running",
      stage: 0,
      stageStartedAt: now,
      ratesSince: now,
      createdBy: actor,
      createdAt: now,
      updatedAt: now,
    };
    if (allowDowngrade) campaign.downgradeGrant = await this.signGrant(campaign);
    const devices = [...assigned].map(
      ([deviceId, stage]): CampaignDeviceDoc => ({
        _id: campaignDeviceId(tenantId, campaignId, deviceId),
        tenantId,
        campaignId,
        deviceId,
        stage,
        status: "pending",
        offers: 0,
        updatedAt: now,
      }),
    );
    await this.store.insert(campaign, devices);
    await this.history.record({
      tenantId,
      campaignId,
      from: null,
      to: "running",
      at: now,
      detail: `created by ${actor}`,
    });
    await this.history.record({ tenantId, campaignId, from: null, to: "stage-started", at: now, code: "1" });
    return campaign;
  }

  private async resolveTarget(tenantId: string, target: Partial<CampaignTarget>): Promise<string[]> {
    const listed = [...new Set(target.devices ?? [])];
    const known = await this.devices.existing(tenantId, listed);
    const unknown = listed.filter((deviceId) => !known.has(deviceId));
    if (unknown.length > 0)
      throw new Problem(400, "unknown_devices", `not devices of this organization: ${unknown.slice(0, 20).join(", ")}`);
    const labelled = await this.devices.idsLabelled(tenantId, { tags: target.tags ?? [], groups: target.groups ?? [] });
    const deviceIds = [...new Set([...listed, ...labelled])].sort();
    if (deviceIds.length === 0)
      throw new Problem(400, "empty_target", "the target names no device of this organization");
    if (deviceIds.length > MAX_CAMPAIGN_DEVICES)
      throw new Problem(400, "target_too_large", `a campaign reaches at most ${MAX_CAMPAIGN_DEVICES} devices`);
    return deviceIds;
  }

  /** A device takes part in one unfinished campaign per kind at a time. */
  private async refuseBusyDevices(tenantId: string, artifact: ArtifactDoc, deviceIds: string[]): Promise<void> {
    const wanted = new Set(deviceIds);
    for (const other of await this.store.unfinished(tenantId)) {
      if (other.kind !== artifact.kind) continue;
      const busy = (await this.store.devicesOf(tenantId, other.campaignId))
        .filter((device) => wanted.has(device.deviceId))
        .map((device) => device.deviceId);
      if (busy.length > 0)
        throw new Problem(
          409,
          "devices_in_campaign",
          `campaign ${other.campaignId} (${other.status}) still holds ${busy.slice(0, 20).join(", ")}; cancel it first`,
        );
    }
  }

  private async signGrant(campaign: CampaignDoc): Promise<SignedText> {
    const issued = this.now();
    const signed = await this.registry.signing.sign(campaign.tenantId, (keyId) => {
      const grant: DowngradeGrant = {
        v: 1,
        type: "downgrade",
        campaign: campaign.campaignId,
        sha256: campaign.sha256,
        keyId,
        issued,
      };
      return JSON.stringify(grant);
    });
    return { text: signed.text, sig: signed.sig };
  }

  // --- operator controls -------------------------------------------------------------------------

  async pause(campaign: CampaignDoc, actor: string): Promise<CampaignDoc> {
    return this.move(campaign, ["running"], "paused", {}, `paused by ${actor}`);
  }

  /** Running again; a halted campaign's rates start over, forgiving what made it halt. */
  async resume(campaign: CampaignDoc, actor: string): Promise<CampaignDoc> {
    const now = new Date(this.now());
    const set: Partial<CampaignDoc> = campaign.status === "halted" ? { ratesSince: now } : {};
    return this.move(campaign, ["paused", "halted"], "running", set, `resumed by ${actor}`, ["haltReason"]);
  }

  async cancel(campaign: CampaignDoc, actor: string): Promise<CampaignDoc> {
    return this.move(campaign, ["running", "paused", "halted"], "cancelled", {}, `cancelled by ${actor}`);
  }

  /** Starts the next stage now, soaked or not (or completes the campaign after its last stage). */
  async advance(campaign: CampaignDoc, actor: string): Promise<CampaignDoc> {
    if (campaign.status !== "running" && campaign.status !== "paused")
      throw new Problem(409, "campaign_not_active", `campaign ${campaign.campaignId} is ${campaign.status}`);
    if (!(await this.advanceStage(campaign, `advanced by ${actor}`)))
      throw new Problem(409, "campaign_changed", "the campaign changed meanwhile; read it again");
    return (await this.store.find(campaign.tenantId, campaign.campaignId)) as CampaignDoc;
  }

  private async move(
    campaign: CampaignDoc,
    from: CampaignDoc["status"][],
    to: CampaignDoc["status"],
    set: Partial<CampaignDoc>,
    detail: string,
    unset: string[] = [],
  ): Promise<CampaignDoc> {
    if (!from.includes(campaign.status))
      throw new Problem(
        409,
        "campaign_not_active",
        `campaign ${campaign.campaignId} is ${campaign.status}, not ${from.join(" or ")}`,
      );
    if (!(await this.store.update(campaign, { status: campaign.status }, { ...set, status: to }, unset)))
      throw new Problem(409, "campaign_changed", "the campaign changed meanwhile; read it again");
    await this.history.record({
      tenantId: campaign.tenantId,
      campaignId: campaign.campaignId,
      from: campaign.status,
      to,
      at: new Date(this.now()),
      detail,
    });
    return (await this.store.find(campaign.tenantId, campaign.campaignId)) as CampaignDoc;
  }

  /** The next stage, or completion after the last; false when the campaign moved meanwhile. */
  private async advanceStage(campaign: CampaignDoc, detail: string): Promise<boolean> {
    const now = new Date(this.now());
    const { tenantId, campaignId } = campaign;
    const next = campaign.stage + 1;
    if (next >= campaign.stages.length) {
      if (
        !(await this.store.update(
          campaign,
          { status: campaign.status, stage: campaign.stage },
          { status: "completed" },
        ))
      )
        return false;
      await this.history.record({ tenantId, campaignId, from: campaign.status, to: "completed", at: now, detail });
      return true;
    }
    const moved = await this.store.update(
      campaign,
      { status: campaign.status, stage: campaign.stage },
      { stage: next, stageStartedAt: now, ratesSince: now },
      ["stageDoneAt"],
    );
    if (!moved) return false;
    await this.history.record({
      tenantId,
      campaignId,
      from: null,
      to: "stage-started",
      at: now,
      code: String(next + 1),
      detail,
    });
    return true;
  }

  // --- gateways: offers and reports --------------------------------------------------------------

  /**
   * Offers for these connected devices: devices of running campaigns whose stage has started and
   * that were not offered yet, or whose last offer brought no report within the lease.
   */
  async offers(tenantId: string, connected: ReadonlySet<string>, max: number): Promise<DeviceOffer[]> {
    const now = this.now();
    const offers: DeviceOffer[] = [];
    for (const campaign of await this.store.running(tenantId)) {
      if (offers.length >= max) break;
      const due = (await this.store.devicesOf(tenantId, campaign.campaignId)).filter(
        (device) =>
          connected.has(device.deviceId) &&
          device.stage <= campaign.stage &&
          !TERMINAL.has(device.status) &&
          (device.status === "pending" || (device.leaseUntil !== undefined && device.leaseUntil.getTime() <= now)),
      );
      if (due.length === 0) continue;
      const offer = await this.offerOf(campaign);
      for (const device of due) {
        if (offers.length >= max) break;
        if (!(await this.store.claimOffer(device))) continue;
        const at = new Date(now);
        const set: Partial<CampaignDeviceDoc> = {
          offers: device.offers + 1,
          leaseUntil: new Date(now + this.options.offerLeaseMs),
          updatedAt: at,
        };
        if (device.status === "pending") Object.assign(set, { status: "notified", notifiedAt: at });
        await this.store.updateDevice(device, set);
        if (device.status === "pending") await this.deviceTransition(campaign, device, "notified", at, {});
        offers.push({ deviceId: device.deviceId, offer });
      }
    }
    return offers;
  }

  private async offerOf(campaign: CampaignDoc): Promise<ArtifactOffer> {
    const artifact = await this.registry.require(campaign.tenantId, campaign.artifactId);
    const manifest = await this.registry.manifestFor(artifact);
    const trust = await this.registry.signing.trust(campaign.tenantId);
    const offer: ArtifactOffer = {
      v: 1,
      campaign: campaign.campaignId,
      manifest,
      trust,
      windowS: campaign.startWindowSeconds,
    };
    if (campaign.allowDowngrade) offer.downgrade = await this.currentGrant(campaign);
    return offer;
  }

  /** The downgrade grant signed by the key devices trust now (re-signed after a rotation). */
  private async currentGrant(campaign: CampaignDoc): Promise<SignedText> {
    const active = await this.registry.signing.activeKeyId(campaign.tenantId);
    const grant = campaign.downgradeGrant;
    if (grant && (JSON.parse(grant.text) as DowngradeGrant).keyId === active) return grant;
    const signed = await this.signGrant(campaign);
    await this.store.update(campaign, {}, { downgradeGrant: signed });
    return signed;
  }

  /** Applies a device's report; false when it changes nothing (unknown, stale, already final). */
  async report(tenantId: string, deviceId: string, report: ArtifactStatusReport, receivedAt: number): Promise<boolean> {
    const device = await this.store.device(tenantId, report.campaign, deviceId);
    if (!device || TERMINAL.has(device.status)) return false;
    if (device.reportedAt !== undefined && receivedAt < device.reportedAt) return false;
    const campaign = await this.store.find(tenantId, report.campaign);
    if (!campaign || campaign.sha256 !== report.sha256) return false;
    const now = this.now();
    const at = new Date(now);
    const set: Partial<CampaignDeviceDoc> = {
      status: report.status,
      reportedAt: receivedAt,
      updatedAt: at,
      leaseUntil: new Date(now + this.options.offerLeaseMs),
    };
    if (report.bytes !== undefined) set.bytes = report.bytes;
    if (report.total !== undefined) set.total = report.total;
    if (report.running !== undefined) set.running = report.running;
    if (report.code !== undefined) set.code = report.code;
    if (report.reason !== undefined) set.reason = report.reason;
    if (TERMINAL.has(report.status)) set.finishedAt = at;
    await this.store.updateDevice(device, set);
    if (report.status !== device.status) {
      await this.deviceTransition(campaign, device, report.status, at, {
        ...(report.reason === undefined ? {} : { detail: report.reason }),
        ...(report.code === undefined ? {} : { code: report.code }),
      });
      if (TERMINAL.has(report.status)) await this.evaluate(campaign, false);
    }
    return true;
  }

  private async deviceTransition(
    campaign: CampaignDoc,
    device: CampaignDeviceDoc,
    to: DeviceRolloutStatus,
    at: Date,
    why: { detail?: string; code?: string },
  ): Promise<void> {
    await this.history.record({
      tenantId: campaign.tenantId,
      campaignId: campaign.campaignId,
      deviceId: device.deviceId,
      from: device.status,
      to,
      at,
      ...why,
    });
  }

  // --- the rollout's progress --------------------------------------------------------------------

  /**
   * Halts the campaign when its current stage crossed a threshold. With `runner` (the one replica
   * holding the rollout lease) also notes when the stage finished, and advances it once soaked.
   */
  async evaluate(campaign: CampaignDoc, runner: boolean): Promise<void> {
    if (campaign.status !== "running") return;
    const now = this.now();
    const stageDevices = (await this.store.devicesOf(campaign.tenantId, campaign.campaignId)).filter(
      (device) => device.stage === campaign.stage,
    );
    const tally = await this.tally(campaign, stageDevices, now);
    const stage = { index: campaign.stage, soakSeconds: (campaign.stages[campaign.stage] as Stage).soakSeconds };
    const verdict = judgeStage(stage, tally, campaign.thresholds, campaign.stageDoneAt?.getTime(), now);
    if (verdict.kind === "halt") {
      if (await this.store.update(campaign, { status: "running" }, { status: "halted", haltReason: verdict.reason }))
        await this.history.record({
          tenantId: campaign.tenantId,
          campaignId: campaign.campaignId,
          from: "running",
          to: "halted",
          at: new Date(now),
          detail: verdict.reason,
        });
      return;
    }
    if (!runner) return;
    if (tally.devices === 0) {
      await this.advanceStage(campaign, `stage ${campaign.stage + 1} has no devices`);
      return;
    }
    if (campaign.stageDoneAt === undefined && stageFinished(tally)) {
      const doneAt = new Date(now);
      await this.store.update(campaign, { stage: campaign.stage }, { stageDoneAt: doneAt });
      await this.history.record({
        tenantId: campaign.tenantId,
        campaignId: campaign.campaignId,
        from: "stage-started",
        to: "stage-soaking",
        at: doneAt,
        code: String(campaign.stage + 1),
      });
      return;
    }
    if (verdict.kind === "advance" && campaign.autoAdvance)
      await this.advanceStage(campaign, `stage ${campaign.stage + 1} soaked`);
  }

  private async tally(campaign: CampaignDoc, devices: CampaignDeviceDoc[], now: number): Promise<StageTally> {
    const tally: StageTally = { devices: 0, byStatus: {}, stalled: 0, regressed: 0 };
    const timeout = campaign.deviceTimeoutSeconds * 1000;
    for (const device of devices) {
      // Outcomes before a resumed halt are forgiven: they are not counted again.
      if (device.finishedAt !== undefined && device.finishedAt < campaign.ratesSince) continue;
      tally.devices++;
      tally.byStatus[device.status] = (tally.byStatus[device.status] ?? 0) + 1;
      if (!TERMINAL.has(device.status)) {
        const lastNews = Math.max(device.updatedAt.getTime(), campaign.stageStartedAt.getTime());
        if (now - lastNews > timeout) tally.stalled++;
      } else if (device.status === "confirmed" && (await this.regressed(campaign, device, now))) tally.regressed++;
    }
    return tally;
  }

  /** More watchdog resets since the update than in as long a time before it was offered. */
  private async regressed(campaign: CampaignDoc, device: CampaignDeviceDoc, now: number): Promise<boolean> {
    if (!device.finishedAt || !device.notifiedAt) return false;
    const since = device.finishedAt;
    const span = now - since.getTime();
    const after = await this.resets.watchdogResets(campaign.tenantId, device.deviceId, since, new Date(now));
    if (after === 0) return false;
    const before = await this.resets.watchdogResets(
      campaign.tenantId,
      device.deviceId,
      new Date(device.notifiedAt.getTime() - span),
      device.notifiedAt,
    );
    return after > before;
  }

  /** One pass of the rollout over every running campaign (the runner calls it under its lease). */
  async tick(): Promise<void> {
    for (const campaign of await this.store.running()) await this.evaluate(campaign, true);
  }
}

function checkStages(stages: readonly Stage[]): void {
  if (stages.length === 0 || stages.length > 10) throw new Problem(400, "invalid_stages", "give 1..10 stages");
  let previous = 0;
  for (const [index, stage] of stages.entries()) {
    if (stage.percent <= previous)
      throw new Problem(
        400,
        "invalid_stages",
        `stage ${index + 1}: percentages must grow (${stage.percent} after ${previous})`,
      );
    previous = stage.percent;
  }
  if (previous !== 100) throw new Problem(400, "invalid_stages", "the last stage must reach 100 percent");
}
