// Alerts (one document per firing, kept as history), their acknowledgements, and the recorder the
// evaluators call on a state change. An alert's id is derived from rule, subject and episode, so
// a replayed evaluation finds the alert it already opened and publishes nothing twice. An alert
// document is written by the evaluator that owns its rule kind; an acknowledgement is a unique
// insert of its own (who and when, once), so the API never writes a document an evaluator writes.

import { createHash } from "node:crypto";
import type { Collection, Db, Filter } from "mongodb";
import { EventPublisher } from "../events/event-publisher.ts";
import type { CloudMetrics } from "../metrics/cloud-metrics.ts";
import type { AlertStatus, AlertView } from "./alert-schema.ts";
import type { RuleDoc, RuleStore } from "./rule-store.ts";

const DUPLICATE_KEY = 11000;

/** An alert as its evaluator stores it: the view's fields but for what acknowledgements add. */
export interface AlertDoc
  extends Omit<AlertView, "alertId" | "status" | "acknowledgedAt" | "acknowledgedBy" | "history"> {
  _id: string;
  tenantId: string;
}

interface AckDoc {
  _id: string;
  tenantId: string;
  by: string;
  at: number;
  note?: string;
}

export function alertId(ruleId: string, subject: string, episode: number): string {
  return `alt_${createHash("sha256").update(`${ruleId}|${subject}|${episode}`).digest("base64url").slice(0, 24)}`;
}

export function toAlertView(doc: AlertDoc, ack: AckDoc | null): AlertView {
  const history: AlertView["history"] = [{ status: "firing", at: doc.firedAt, by: null }];
  if (ack) history.push({ status: "acknowledged", at: ack.at, by: ack.by, ...(ack.note && { note: ack.note }) });
  if (doc.resolvedAt !== null) history.push({ status: "resolved", at: doc.resolvedAt, by: null });
  const status: AlertStatus = doc.resolvedAt !== null ? "resolved" : ack ? "acknowledged" : "firing";
  return {
    alertId: doc._id,
    ruleId: doc.ruleId,
    ruleName: doc.ruleName,
    kind: doc.kind,
    severity: doc.severity,
    subject: doc.subject,
    deviceId: doc.deviceId,
    metric: doc.metric,
    status,
    silenced: doc.silenced,
    firedAt: doc.firedAt,
    value: doc.value,
    acknowledgedAt: ack?.at ?? null,
    acknowledgedBy: ack?.by ?? null,
    resolvedAt: doc.resolvedAt,
    resolvedValue: doc.resolvedValue,
    history,
  };
}

export class AlertStore {
  private readonly alerts: Collection<AlertDoc>;
  private readonly acks: Collection<AckDoc>;

  constructor(db: Db) {
    this.alerts = db.collection<AlertDoc>("alerts");
    this.acks = db.collection<AckDoc>("alert_acks");
  }

  static async createIndexes(db: Db): Promise<void> {
    await db.collection<AlertDoc>("alerts").createIndex({ tenantId: 1, firedAt: -1, _id: -1 });
    await db.collection<AlertDoc>("alerts").createIndex({ resolvedAt: 1 });
  }

  /** Inserts the alert unless it exists; true when this call opened it. */
  async open(doc: AlertDoc): Promise<boolean> {
    try {
      await this.alerts.insertOne(doc);
      return true;
    } catch (error) {
      if ((error as { code?: number }).code === DUPLICATE_KEY) return false;
      throw error;
    }
  }

  /** Marks it resolved unless it is; true when this call resolved it. */
  async close(id: string, at: number, value: number | null): Promise<boolean> {
    const result = await this.alerts.updateOne(
      { _id: id, resolvedAt: null },
      { $set: { resolvedAt: at, resolvedValue: value } },
    );
    return result.modifiedCount === 1;
  }

  get(id: string): Promise<AlertDoc | null> {
    return this.alerts.findOne({ _id: id });
  }

  async view(tenantId: string, id: string): Promise<AlertView | null> {
    const doc = await this.get(id);
    if (doc?.tenantId !== tenantId) return null;
    return toAlertView(doc, await this.acks.findOne({ _id: id }));
  }

  /** Acknowledges once; false when it was already (the first acknowledgement stands). */
  async acknowledge(tenantId: string, id: string, by: string, at: number, note?: string): Promise<boolean> {
    try {
      await this.acks.insertOne({ _id: id, tenantId, by, at, ...(note && { note }) });
      return true;
    } catch (error) {
      if ((error as { code?: number }).code === DUPLICATE_KEY) return false;
      throw error;
    }
  }

  /** Newest first; `open` is firing or acknowledged. Acknowledgement is read per alert of the page. */
  async list(
    tenantId: string,
    query: {
      status?: "open" | AlertStatus;
      ruleId?: string;
      deviceId?: string;
      limit: number;
      before?: [number, string];
    },
  ): Promise<{ items: AlertView[]; more: boolean }> {
    const filter: Filter<AlertDoc> = { tenantId };
    if (query.ruleId) filter.ruleId = query.ruleId;
    if (query.deviceId) filter.deviceId = query.deviceId;
    if (query.status === "resolved") filter.resolvedAt = { $ne: null };
    else if (query.status) filter.resolvedAt = null;
    if (query.before) {
      const [firedAt, id] = query.before;
      filter.$or = [{ firedAt: { $lt: firedAt } }, { firedAt, _id: { $lt: id } }];
    }
    const items: AlertView[] = [];
    const cursor = this.alerts.find(filter).sort({ firedAt: -1, _id: -1 });
    // Acknowledged and firing differ only by an ack, so those filters read on until the page is full.
    for await (const doc of cursor) {
      const view = toAlertView(doc, await this.acks.findOne({ _id: doc._id }));
      if (query.status === "firing" && view.status !== "firing") continue;
      if (query.status === "acknowledged" && view.status !== "acknowledged") continue;
      if (items.length === query.limit) {
        await cursor.close();
        return { items, more: true };
      }
      items.push(view);
    }
    return { items, more: false };
  }
}

export interface Subject {
  tenantId: string;
  /** The device id, or a system subject (`organization`, `gateway:<id>`). */
  subject: string;
  deviceId: string | null;
  metric: string | null;
}

/**
 * Turns an evaluator's state change into an alert and a notification: exactly once per change,
 * however often the same change is evaluated again (after a crash, or by a replica that takes
 * the lease over), and muted while a silence covers the rule or device.
 */
export class AlertRecorder {
  private readonly alerts: AlertStore;
  private readonly events: EventPublisher;

  constructor(
    db: Db,
    private readonly rules: RuleStore,
    private readonly metrics: CloudMetrics,
    private readonly now: () => number = Date.now,
  ) {
    this.alerts = new AlertStore(db);
    this.events = new EventPublisher(db, now);
  }

  async fired(rule: RuleDoc, subject: Subject, episode: number, at: number, value: number | null): Promise<string> {
    const id = alertId(rule._id, subject.subject, episode);
    const silenced = await this.rules.silenced(subject.tenantId, rule._id, subject.deviceId, this.now());
    await this.alerts.open({
      _id: id,
      tenantId: subject.tenantId,
      ruleId: rule._id,
      ruleName: rule.name,
      kind: rule.condition.kind,
      severity: rule.severity,
      subject: subject.subject,
      deviceId: subject.deviceId,
      metric: subject.metric,
      silenced,
      firedAt: at,
      value,
      resolvedAt: null,
      resolvedValue: null,
    });
    // Published even when the insert found the alert: a crash may have come between the two.
    const alert = (await this.alerts.get(id)) ?? { silenced };
    if (!alert.silenced) await this.notify("alert.fired", rule, subject, id, at, value);
    this.metrics.alertTransitions.inc({ transition: "fired", silenced: String(alert.silenced) });
    return id;
  }

  async resolved(rule: RuleDoc, subject: Subject, id: string, at: number, value: number | null): Promise<void> {
    await this.alerts.close(id, at, value);
    const alert = await this.alerts.get(id);
    if (alert && !alert.silenced) await this.notify("alert.resolved", rule, subject, id, at, value);
    this.metrics.alertTransitions.inc({ transition: "resolved", silenced: String(alert?.silenced ?? false) });
  }

  private async notify(
    type: "alert.fired" | "alert.resolved",
    rule: RuleDoc,
    subject: Subject,
    id: string,
    at: number,
    value: number | null,
  ): Promise<void> {
    await this.events.publish(subject.tenantId, type, id, {
      alertId: id,
      ruleId: rule._id,
      ruleName: rule.name,
      kind: rule.condition.kind,
      severity: rule.severity,
      subject: subject.subject,
      deviceId: subject.deviceId,
      metric: subject.metric,
      value,
      at,
    });
  }
}
