// The alert engine for what samples do not carry: device connection (device.online/offline
// events), boot-loop safe mode and watchdog resets from the device-state journal, in order; and,
// on a sweep every few seconds, devices offline or silent for a rule's duration (from the last
// will and lastSeen), the sliding watchdog-reset window, and system metrics (ingest lag, gateway
// queues, webhook failure rate). Every replica runs it; one at a time works, under the
// `alert-engine` SlotLease, and it alone writes the states it keeps (alert_device_states,
// alert_system_states), so each change is recorded and notified once.

import type { FastifyBaseLogger } from "fastify";
import type { Collection, Db } from "mongodb";
import type { DeviceDoc } from "../devices/device-store.ts";
import { EventPublisher } from "../events/event-publisher.ts";
import { UplinkProgressStore } from "../gateway/uplink-progress.ts";
import type { CloudMetrics } from "../metrics/cloud-metrics.ts";
import { PROCESS_HOLDER, SlotLease } from "../retention/lease.ts";
import { AttemptStats } from "../webhooks/delivery-store.ts";
import type { AlertCondition, SystemMetric } from "./alert-schema.ts";
import type { AlertRecorder, Subject } from "./alert-store.ts";
import { initialState, type LevelCondition, type RuleState, type Step, stepLevel } from "./conditions.ts";
import { DeviceStateJournal, type JournalledState } from "./device-state-journal.ts";
import { ruleMatches } from "./rule-scope.ts";
import { type DeviceTrackDoc, RuleStateStore, type RuleStatesDoc, stateDocId } from "./rule-state-store.ts";
import type { RuleDoc, RuleStore } from "./rule-store.ts";

export interface AlertEngineOptions {
  rules: RuleStore;
  recorder: AlertRecorder;
  metrics: CloudMetrics;
  now?: () => number;
  /** How often the device-state journal is read. */
  intervalMs?: number;
  /** How often offline devices, reset windows and system metrics are checked. */
  sweepMs?: number;
  holder?: string;
}

const LEASE_SLOT_MS = 30_000;
const PASS_MAX_MS = 15_000;
const JOURNAL_BATCH = 50;
/** Watchdog resets kept per device (the windows of the rules decide which count). */
const RESETS_KEPT = 100;
/** A gateway report older than this is not evaluated (the gateway is silent, its numbers stale). */
const GATEWAY_REPORT_MAX_AGE_MS = 5 * 60_000;
/** Window of the webhook failure rate. */
const WEBHOOK_RATE_WINDOW_MS = 5 * 60_000;
const DEVICE_KINDS = ["offline", "watchdog_resets"] as const;
const SYSTEM_KIND = "system";

type DeviceSummary = Pick<DeviceDoc, "deviceId" | "online" | "stateAt" | "lastSeen" | "tags" | "groups">;

/** A level that fires once `value` exceeds `limit` and clears back at or under it. */
function overLimit(limit: number): LevelCondition {
  return { op: "above", high: limit, forSeconds: 0 };
}

function emptyTrack(tenantId: string, deviceId: string): DeviceTrackDoc {
  return {
    _id: stateDocId(tenantId, deviceId),
    tenantId,
    subject: deviceId,
    rules: {},
    online: null,
    // Stored documents hold finite numbers only (FerretDB refuses infinities): 0 is before any state.
    stateAt: 0,
    boot: null,
    watchdogResets: [],
  };
}

export class AlertEngine {
  private readonly journal: DeviceStateJournal;
  private readonly tracks: RuleStateStore<DeviceTrackDoc>;
  private readonly systemStates: RuleStateStore<RuleStatesDoc>;
  private readonly devices: Collection<DeviceDoc>;
  private readonly telemetryJournal: Collection<{ tenantId: string; at?: number }>;
  private readonly gateways: UplinkProgressStore;
  private readonly attempts: AttemptStats;
  private readonly events: EventPublisher;
  private readonly lease: SlotLease;
  private readonly now: () => number;
  private readonly intervalMs: number;
  private readonly sweepMs: number;
  private lastSweep = Number.NEGATIVE_INFINITY;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;

  constructor(
    db: Db,
    private readonly log: FastifyBaseLogger,
    private readonly options: AlertEngineOptions,
  ) {
    this.now = options.now ?? Date.now;
    this.intervalMs = options.intervalMs ?? 1000;
    this.sweepMs = options.sweepMs ?? 5000;
    this.journal = new DeviceStateJournal(db);
    this.tracks = new RuleStateStore(db, "alert_device_states");
    this.systemStates = new RuleStateStore(db, "alert_system_states");
    this.devices = db.collection<DeviceDoc>("devices");
    this.telemetryJournal = db.collection("telemetry_journal");
    this.gateways = new UplinkProgressStore(db);
    this.attempts = new AttemptStats(db);
    this.events = new EventPublisher(db, this.now);
    this.lease = new SlotLease(db, "alert-engine", LEASE_SLOT_MS, options.holder ?? PROCESS_HOLDER, this.now);
  }

  start(): void {
    this.timer = setInterval(() => {
      if (this.running) return;
      this.running = this.runOnce()
        .catch((error: unknown) => this.log.error({ err: error }, "alert engine pass failed"))
        .finally(() => {
          this.running = undefined;
        });
    }, this.intervalMs);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.running;
  }

  /** One pass: the device-state journal, then the sweep when it is due. Tests call it on their clock. */
  async runOnce(): Promise<void> {
    if (!(await this.lease.acquire(PASS_MAX_MS))) return;
    await this.applyStates();
    if (this.now() - this.lastSweep >= this.sweepMs) {
      this.lastSweep = this.now();
      await this.sweepDevices();
      await this.sweepSystem();
    }
  }

  /** Connection, safe-mode and reset changes, in gateway receive order per device. */
  private async applyStates(): Promise<void> {
    for (
      let docs = await this.journal.next(JOURNAL_BATCH);
      docs.length > 0;
      docs = await this.journal.next(JOURNAL_BATCH)
    ) {
      const perDevice = new Map<string, { tenantId: string; states: JournalledState[] }>();
      for (const { tenantId, states } of docs) {
        for (const state of states) {
          const key = stateDocId(tenantId, state.deviceId);
          const entry = perDevice.get(key) ?? { tenantId, states: [] };
          entry.states.push(state);
          perDevice.set(key, entry);
        }
      }
      const stored = await this.tracks.read([...perDevice.keys()]);
      const changed: DeviceTrackDoc[] = [];
      for (const [key, { tenantId, states }] of perDevice) {
        const track = stored.get(key) ?? emptyTrack(tenantId, states[0]?.deviceId ?? "");
        const rules = (await this.options.rules.enabled(tenantId)).filter(
          (rule) => rule.condition.kind === "safe_mode" || rule.condition.kind === "watchdog_resets",
        );
        states.sort((a, b) => a.receivedAt - b.receivedAt);
        for (const journalled of states) await this.applyState(track, journalled, rules);
        changed.push(track);
      }
      await this.tracks.write(changed);
      await this.journal.remove(docs);
    }
  }

  private async applyState(track: DeviceTrackDoc, { deviceId, receivedAt, state }: JournalledState, rules: RuleDoc[]) {
    // A state older than one applied already (a retried request) changes nothing, as in the device store.
    if (receivedAt < track.stateAt) return;
    track.stateAt = receivedAt;
    if (track.online !== state.online) {
      const type = state.online ? "device.online" : "device.offline";
      await this.events.publish(track.tenantId, type, `${deviceId}|${receivedAt}`, {
        deviceId,
        at: receivedAt,
        ...(state.reset && { reason: state.reset }),
      });
      track.online = state.online;
    }
    if (state.boot !== undefined && state.boot !== track.boot) {
      if (state.reset === "watchdog") track.watchdogResets = [...track.watchdogResets, receivedAt].slice(-RESETS_KEPT);
      track.boot = state.boot;
    }
    const subject: Subject = { tenantId: track.tenantId, subject: deviceId, deviceId, metric: null };
    for (const rule of rules) {
      if (!ruleMatches(rule, deviceId, await this.labelsOf(track.tenantId, deviceId))) continue;
      const condition = rule.condition;
      if (condition.kind === "safe_mode" && state.mode !== undefined) {
        await this.step(rule, track, subject, state.mode === "safe" ? 1 : 0, receivedAt, overLimit(0.5));
      } else if (condition.kind === "watchdog_resets") {
        const count = track.watchdogResets.filter((at) => at > receivedAt - condition.windowSeconds * 1000).length;
        await this.step(rule, track, subject, count, receivedAt, overLimit(condition.count));
      }
    }
  }

  private async labelsOf(tenantId: string, deviceId: string) {
    const doc = await this.devices.findOne(
      { _id: stateDocId(tenantId, deviceId) },
      { projection: { tags: 1, groups: 1 } },
    );
    return { tags: doc?.tags ?? [], groups: doc?.groups ?? [] };
  }

  /** Evaluates a level on a state document's rule state; records a transition (alert and event first). */
  private async step(
    rule: RuleDoc,
    doc: RuleStatesDoc,
    subject: Subject,
    value: number,
    at: number,
    level: LevelCondition,
  ): Promise<boolean> {
    const previous = doc.rules[rule._id] ?? initialState();
    // The engine orders what it evaluates itself; the level sees every value.
    const step: Step = stepLevel(level, { ...previous, lastTs: 0 }, value, at);
    this.options.metrics.alertEvaluations.inc({ kind: rule.condition.kind });
    let next: RuleState = step.state;
    if (step.transition === "fired") {
      next = { ...next, alertId: await this.options.recorder.fired(rule, subject, next.episode, at, value) };
      this.log.info({ tenantId: subject.tenantId, subject: subject.subject, ruleId: rule._id, value }, "alert fired");
    } else if (step.transition === "resolved" && previous.alertId) {
      await this.options.recorder.resolved(rule, subject, previous.alertId, at, value);
      this.log.info({ tenantId: subject.tenantId, subject: subject.subject, ruleId: rule._id }, "alert resolved");
    }
    const changed = next.status !== previous.status || next.since !== previous.since;
    doc.rules[rule._id] = next;
    return changed;
  }

  /** Offline/silent devices and sliding reset windows, for the organizations with such rules. */
  private async sweepDevices(): Promise<void> {
    const now = this.now();
    const byTenant = new Map<string, RuleDoc[]>();
    for (const rule of await this.options.rules.enabledOfKinds(DEVICE_KINDS)) {
      byTenant.set(rule.tenantId, [...(byTenant.get(rule.tenantId) ?? []), rule]);
    }
    for (const [tenantId, rules] of byTenant) {
      // A scan of the organization's devices (indexed on MongoDB; FerretDB scans, see the cloud README).
      const devices = (await this.devices
        .find({ tenantId }, { projection: { deviceId: 1, online: 1, stateAt: 1, lastSeen: 1, tags: 1, groups: 1 } })
        .toArray()) as DeviceSummary[];
      const tracks = await this.tracks.read(devices.map((device) => stateDocId(tenantId, device.deviceId)));
      const changed: DeviceTrackDoc[] = [];
      for (const device of devices) {
        const matching = rules.filter((rule) => ruleMatches(rule, device.deviceId, device));
        if (matching.length === 0) continue;
        const key = stateDocId(tenantId, device.deviceId);
        const track = tracks.get(key) ?? emptyTrack(tenantId, device.deviceId);
        const subject: Subject = { tenantId, subject: device.deviceId, deviceId: device.deviceId, metric: null };
        let dirty = false;
        for (const rule of matching) {
          const value = this.deviceValue(rule.condition, device, track, now);
          if (value === undefined) continue;
          const limit =
            rule.condition.kind === "offline" ? rule.condition.forSeconds : (rule.condition as { count: number }).count;
          if (await this.step(rule, track, subject, value, now, overLimit(limit))) dirty = true;
        }
        if (dirty) changed.push(track);
      }
      await this.tracks.write(changed);
    }
  }

  /**
   * Offline: seconds since the device was last heard of, counting from its last will (an offline
   * state) when that came, else from lastSeen; undefined for a device never heard of. Watchdog:
   * resets inside the rule's window now.
   */
  private deviceValue(
    condition: AlertCondition,
    device: DeviceSummary,
    track: DeviceTrackDoc,
    now: number,
  ): number | undefined {
    if (condition.kind === "watchdog_resets") {
      return track.watchdogResets.filter((at) => at > now - condition.windowSeconds * 1000).length;
    }
    const lastSeen = device.lastSeen?.getTime() ?? 0;
    const since = device.online === false && device.stateAt !== undefined ? device.stateAt : lastSeen;
    if (since <= 0) return undefined;
    return Math.max(0, (now - since) / 1000);
  }

  /** System metrics per organization with system rules: one value per subject (organization, gateway). */
  private async sweepSystem(): Promise<void> {
    const now = this.now();
    const byTenant = new Map<string, RuleDoc[]>();
    for (const rule of await this.options.rules.enabledOfKinds([SYSTEM_KIND])) {
      byTenant.set(rule.tenantId, [...(byTenant.get(rule.tenantId) ?? []), rule]);
    }
    for (const [tenantId, rules] of byTenant) {
      const values = new Map<SystemMetric, Array<[string, number]>>();
      const metricsUsed = new Set(rules.map((rule) => (rule.condition as { metric: SystemMetric }).metric));
      for (const metric of metricsUsed) values.set(metric, await this.systemValues(tenantId, metric, now));
      const docs = await this.systemStates.read([
        ...new Set([...values.values()].flat().map(([subject]) => stateDocId(tenantId, subject))),
      ]);
      const changed = new Map<string, RuleStatesDoc>();
      for (const rule of rules) {
        const condition = rule.condition as LevelCondition & { metric: SystemMetric };
        for (const [subjectName, value] of values.get(condition.metric) ?? []) {
          const key = stateDocId(tenantId, subjectName);
          const doc = docs.get(key) ?? { _id: key, tenantId, subject: subjectName, rules: {} };
          docs.set(key, doc);
          const subject: Subject = { tenantId, subject: subjectName, deviceId: null, metric: condition.metric };
          const previous = doc.rules[rule._id];
          // The sweeps are the level's samples: its hold (forSeconds) spans them.
          await this.step(rule, doc, subject, value, now, condition);
          if (JSON.stringify(previous) !== JSON.stringify(doc.rules[rule._id])) changed.set(key, doc);
        }
      }
      await this.systemStates.write([...changed.values()]);
    }
  }

  private async systemValues(tenantId: string, metric: SystemMetric, now: number): Promise<Array<[string, number]>> {
    if (metric === "ingest_lag_seconds") {
      const oldest = await this.telemetryJournal.find({ tenantId }).sort({ _id: 1 }).limit(1).next();
      const at = oldest ? (oldest.at ?? now) : now;
      return [["organization", Math.max(0, (now - at) / 1000)]];
    }
    if (metric === "webhook_failure_rate") {
      return [["organization", (await this.attempts.failureRate(tenantId, now, WEBHOOK_RATE_WINDOW_MS)) ?? 0]];
    }
    // From the gateways' uplink reports: items waiting, and (while any wait) since when the oldest has.
    const reports = await this.gateways.recent(tenantId, now - GATEWAY_REPORT_MAX_AGE_MS);
    return reports.map((report) => [
      `gateway:${report.gatewayId}`,
      metric === "gateway_queue_depth"
        ? report.pending
        : report.pending === 0
          ? 0
          : Math.max(0, (report.reportedAt.getTime() - report.completeUntil.getTime()) / 1000),
    ]);
  }
}
