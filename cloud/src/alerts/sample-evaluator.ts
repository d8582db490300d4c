// Streaming evaluation of threshold and rate-of-change rules, called by the telemetry applier
// after each pass has stored its samples (under the apply lease: one replica evaluates at a time),
// with the samples new to the store only: one sent or applied again is never evaluated twice.
// Each device's samples are evaluated in device-time order. Samples arrive a little out of order
// across passes (the gateway has several requests in flight), so one up to the rule's window (its
// hold or rate window, at least REORDER_TOLERANCE_MS) older than the newest evaluated is still
// evaluated; an older one is late: skipped and counted, so it never fires or resolves anything.
// The alert and its event are written before the state, and both are idempotent, so a pass that
// is applied again changes nothing.
// States are held in memory for as long as this process holds the apply lease without a break
// (its tenure): only the lease holder evaluates, so what it holds is the truth, and it reads a
// device's states once, not on every pass. A change that matters (a status, an episode, an alert)
// is written in the pass that made it; the rest (last evaluated times, rate windows) at most every
// CHECKPOINT_MS, so a replica taking the lease over starts from states at most that old: a late
// sample is recognised to that precision, and a rate is measured over a window missing as much.

import type { FastifyBaseLogger } from "fastify";
import type { Db } from "mongodb";
import type { DeviceDoc } from "../devices/device-store.ts";
import type { CloudMetrics } from "../metrics/cloud-metrics.ts";
import type { AppliedPass } from "../telemetry/telemetry-store.ts";
import { SAMPLE_KINDS } from "./alert-schema.ts";
import type { AlertRecorder } from "./alert-store.ts";
import { initialState, type RuleState, type Step, stepLevel, stepRate } from "./conditions.ts";
import { ruleMatches } from "./rule-scope.ts";
import { RuleStateStore, type RuleStatesDoc, stateDocId } from "./rule-state-store.ts";
import type { RuleDoc, RuleStore } from "./rule-store.ts";

const DEVICES_AT_ONCE = 16;
/** Tries of a device's evaluation in one pass before it is counted as failed. */
const DEVICE_ATTEMPTS = 3;
const RETRY_DELAY_MS = 250;
/** How far out of order a sample may arrive and still be evaluated (rules with longer windows allow more). */
const REORDER_TOLERANCE_MS = 10_000;
const LABELS_TTL_MS = 30_000;
/** The longest a held state goes unwritten when only its times or rate window changed. */
const CHECKPOINT_MS = 10_000;
/** Devices whose states are held in memory at most (the least recently evaluated, written, are let go). */
const MAX_HELD = 20_000;
/** Journal documents remembered as evaluated (a pass is retried with the oldest left, so a few passes' worth). */
const MAX_JOURNAL_REMEMBERED = 50_000;
/** Overdue states written in one pass at most, beside the pass's own. */
const CHECKPOINT_BATCH = 500;

type Labels = Pick<DeviceDoc, "tags" | "groups">;

interface DeviceWork {
  tenantId: string;
  deviceId: string;
  samples: AppliedPass["devices"][number]["samples"];
  rules: RuleDoc[];
}

function toleranceOf(rule: RuleDoc): number {
  const condition = rule.condition;
  const windowSeconds =
    condition.kind === "rate" ? condition.windowSeconds : condition.kind === "threshold" ? condition.forSeconds : 0;
  return Math.max(REORDER_TOLERANCE_MS, windowSeconds * 1000);
}

/** Whether a state moved on in a way that must be stored at once: not only in its times or rate window. */
function transitioned(a: RuleState | undefined, b: RuleState): boolean {
  return (
    a === undefined ||
    a.status !== b.status ||
    a.since !== b.since ||
    a.episode !== b.episode ||
    a.alertId !== b.alertId
  );
}

/** A device's states as this process holds them. */
interface Held {
  doc: RuleStatesDoc;
  /** Newer than what is stored (only in times or rate windows). */
  dirty: boolean;
  writtenAt: number;
}

interface Evaluated {
  device: DeviceWork;
  doc: RuleStatesDoc;
  /** Must be written in this pass. */
  transitioned: boolean;
  counted: Map<string, number>;
  late: number;
}

export class SampleEvaluator {
  private readonly states: RuleStateStore<RuleStatesDoc>;
  private readonly labels = new Map<string, { until: number; labels: Labels }>();
  /** States held under the apply lease's tenure `heldTenure`, by state document id, least recently evaluated first. */
  private readonly held = new Map<string, Held>();
  private heldTenure = -1;
  /**
   * Journal documents whose samples were evaluated in this tenure, oldest first: a pass that failed
   * after its evaluation (deleting its journal documents) is applied again with them, and its
   * samples must not step the states twice (a fire and a clear would fire again, as a new alert).
   */
  private readonly evaluatedJournal = new Set<string>();

  constructor(
    private readonly db: Db,
    private readonly rules: RuleStore,
    private readonly recorder: AlertRecorder,
    private readonly metrics: CloudMetrics,
    private readonly log: FastifyBaseLogger,
  ) {
    this.states = new RuleStateStore(db, "alert_sample_states");
  }

  async evaluate(pass: AppliedPass): Promise<void> {
    // What is held is the truth only while nobody else could have evaluated (see the top).
    if (pass.tenure !== this.heldTenure) {
      this.held.clear();
      this.evaluatedJournal.clear();
      this.heldTenure = pass.tenure;
    }
    const evaluations = new Map<string, number>();
    let late = 0;
    let work: DeviceWork[] = [];
    const byTenant = new Map<string, AppliedPass["devices"]>();
    for (const device of pass.devices)
      byTenant.set(device.tenantId, [...(byTenant.get(device.tenantId) ?? []), device]);
    for (const [tenantId, devices] of byTenant) {
      const rules = (await this.rules.enabled(tenantId)).filter((rule) => SAMPLE_KINDS.includes(rule.condition.kind));
      if (rules.length === 0) continue;
      const needLabels = rules.some((rule) => rule.scope.type === "tag" || rule.scope.type === "group");
      for (const { deviceId, samples: all } of devices) {
        const samples = all.filter(({ journalId }) => !this.evaluatedJournal.has(journalId));
        if (samples.length === 0) continue;
        const labels = needLabels ? await this.labelsOf(tenantId, deviceId) : undefined;
        const matching = rules.filter((rule) => ruleMatches(rule, deviceId, labels));
        if (matching.length > 0) work.push({ tenantId, deviceId, samples, rules: matching });
      }
    }
    // A device's states are read once a tenure and written in one bounded write with the pass's
    // others. Each device is evaluated on its own, so one device's failure (a state the evaluator
    // cannot use) costs the others nothing; a failed device or write is tried again (the recorder and
    // the state writes are idempotent, and what is held changes only once its write is through).
    for (let attempt = 1; work.length > 0; attempt++) {
      const failed: Array<{ device: DeviceWork; error: unknown }> = [];
      const evaluated: Evaluated[] = [];
      try {
        const unheld = work
          .map(({ tenantId, deviceId }) => stateDocId(tenantId, deviceId))
          .filter((id) => !this.held.has(id));
        const stored = await this.states.read(unheld);
        for (let i = 0; i < work.length; i += DEVICES_AT_ONCE) {
          const chunk = work.slice(i, i + DEVICES_AT_ONCE);
          const outcomes = await Promise.allSettled(chunk.map((device) => this.evaluateDevice(device, stored)));
          outcomes.forEach((outcome, j) => {
            const device = chunk[j] as DeviceWork;
            if (outcome.status === "fulfilled") evaluated.push({ device, ...outcome.value });
            else failed.push({ device, error: outcome.reason });
          });
        }
        await this.store(evaluated);
        for (const { counted, late: lateHere } of evaluated) {
          for (const [kind, count] of counted) evaluations.set(kind, (evaluations.get(kind) ?? 0) + count);
          late += lateHere;
        }
      } catch (error) {
        // The read or the write: every device not failed already is tried again.
        for (const { device } of evaluated) failed.push({ device, error });
        if (evaluated.length === 0 && failed.length === 0) for (const device of work) failed.push({ device, error });
      }
      work = [];
      for (const { device, error } of failed) {
        if (attempt < DEVICE_ATTEMPTS) work.push(device);
        else {
          this.metrics.alertEvaluationErrors.inc();
          this.log.error(
            { err: error, tenantId: device.tenantId, deviceId: device.deviceId, attempts: attempt },
            "alert evaluation failed for a device",
          );
        }
      }
      if (work.length > 0) await new Promise((resolve) => setTimeout(resolve, RETRY_DELAY_MS * attempt));
    }
    for (const { samples } of pass.devices) for (const { journalId } of samples) this.evaluatedJournal.add(journalId);
    for (const id of this.evaluatedJournal) {
      if (this.evaluatedJournal.size <= MAX_JOURNAL_REMEMBERED) break;
      this.evaluatedJournal.delete(id);
    }
    for (const [kind, count] of evaluations) this.metrics.alertEvaluations.inc({ kind }, count);
    if (late > 0) this.metrics.alertLateSamples.inc(late);
  }

  /**
   * Writes what must be written (states that transitioned, held ones unwritten for CHECKPOINT_MS,
   * a few overdue ones this pass did not touch), then holds the pass's states.
   */
  private async store(evaluated: Evaluated[]): Promise<void> {
    const now = Date.now();
    const overdue = (held: Held | undefined) => !held || now - held.writtenAt >= CHECKPOINT_MS;
    const written = new Set<string>();
    for (const { doc, transitioned } of evaluated) {
      if (transitioned || overdue(this.held.get(doc._id))) written.add(doc._id);
    }
    const touched = new Set(evaluated.map(({ doc }) => doc._id));
    for (const [id, held] of this.held) {
      if (written.size >= evaluated.length + CHECKPOINT_BATCH) break;
      if (held.dirty && !touched.has(id) && overdue(held)) written.add(id);
    }
    const docs = evaluated.filter(({ doc }) => written.has(doc._id)).map(({ doc }) => doc);
    for (const id of written) {
      const held = this.held.get(id);
      if (held && !touched.has(id)) docs.push(held.doc);
    }
    await this.states.write(docs);
    for (const id of written) {
      const held = this.held.get(id);
      if (held && !touched.has(id)) this.held.set(id, { ...held, dirty: false, writtenAt: now });
    }
    for (const { doc } of evaluated) {
      const before = this.held.get(doc._id);
      const stored = written.has(doc._id);
      // Moved to the end: the map's order is the order of last evaluation, oldest first.
      this.held.delete(doc._id);
      this.held.set(doc._id, { doc, dirty: !stored, writtenAt: stored ? now : (before?.writtenAt ?? now) });
    }
    // Past the bound, the least recently evaluated clean states are let go (a dirty one is written first, when overdue).
    for (const [id, held] of this.held) {
      if (this.held.size <= MAX_HELD) break;
      if (!held.dirty) this.held.delete(id);
    }
  }

  /** One device's samples through its rules: its states after them, and what was counted. */
  private async evaluateDevice(
    { tenantId, deviceId, samples, rules }: DeviceWork,
    stored: Map<string, RuleStatesDoc>,
  ): Promise<Omit<Evaluated, "device">> {
    const ordered = [...samples].sort((a, b) => a.ts - b.ts);
    const _id = stateDocId(tenantId, deviceId);
    const found = this.held.get(_id)?.doc ?? stored.get(_id);
    // Not overwritten with fresh states: alert ids follow the stored episodes, so starting them over
    // would name new alerts after old ones. Counted and logged instead (the caller).
    if (found && (typeof found.rules !== "object" || found.rules === null)) {
      throw new Error(`the stored rule states of ${deviceId} are not an object`);
    }
    const doc: RuleStatesDoc = found
      ? { ...found, rules: { ...found.rules } }
      : { _id, tenantId, subject: deviceId, rules: {} };
    const counted = new Map<string, number>();
    let late = 0;
    let moved = false;
    for (const rule of rules) {
      const before = doc.rules[rule._id];
      let state = before ?? initialState();
      const metric = "metric" in rule.condition ? rule.condition.metric : "";
      for (const { ts, m } of ordered) {
        const value = m[metric];
        if (value === undefined) continue;
        if (ts < state.lastTs - toleranceOf(rule)) {
          late++;
          continue;
        }
        counted.set(rule.condition.kind, (counted.get(rule.condition.kind) ?? 0) + 1);
        const step = this.step(rule, state, value, ts);
        // Most steps change nothing worth recording: only a transition waits on the database.
        state = step.transition ? await this.record(rule, tenantId, deviceId, state, step, value, ts) : step.state;
      }
      // A rule none of whose metric came is not given a state.
      if (state === before || (before === undefined && state.lastTs === 0)) continue;
      if (transitioned(before, state)) moved = true;
      doc.rules[rule._id] = state;
    }
    return { doc, transitioned: moved, counted, late };
  }

  private step(rule: RuleDoc, state: RuleState, value: number, at: number): Step {
    const condition = rule.condition;
    if (condition.kind === "rate") return stepRate(condition, state, value, at);
    if (condition.kind === "threshold") return stepLevel(condition, state, value, at);
    throw new Error(`rule kind ${condition.kind} is not evaluated on samples`);
  }

  /** Records the step's transition (alert and event first), answers the state to keep. */
  private async record(
    rule: RuleDoc,
    tenantId: string,
    deviceId: string,
    previous: RuleState,
    step: Step,
    value: number,
    at: number,
  ): Promise<RuleState> {
    const subject = {
      tenantId,
      subject: deviceId,
      deviceId,
      metric: "metric" in rule.condition ? rule.condition.metric : null,
    };
    if (step.transition === "fired") {
      const alertId = await this.recorder.fired(rule, subject, step.state.episode, at, value);
      this.log.info({ tenantId, deviceId, ruleId: rule._id, alertId, value }, "alert fired");
      return { ...step.state, alertId };
    }
    if (step.transition === "resolved" && previous.alertId) {
      await this.recorder.resolved(rule, subject, previous.alertId, at, value);
      this.log.info({ tenantId, deviceId, ruleId: rule._id, alertId: previous.alertId, value }, "alert resolved");
    }
    return step.state;
  }

  private async labelsOf(tenantId: string, deviceId: string): Promise<Labels> {
    const key = stateDocId(tenantId, deviceId);
    const hit = this.labels.get(key);
    if (hit && hit.until > Date.now()) return hit.labels;
    const doc = await this.db
      .collection<DeviceDoc>("devices")
      .findOne({ _id: key }, { projection: { tags: 1, groups: 1 } });
    const labels = { tags: doc?.tags ?? [], groups: doc?.groups ?? [] };
    if (this.labels.size > 100_000) this.labels.clear();
    this.labels.set(key, { until: Date.now() + LABELS_TTL_MS, labels });
    return labels;
  }
}
