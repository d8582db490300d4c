// Alert rules and silences of every organization. The evaluators read a tenant's rules and
// silences through a short cache (a change made on another replica is seen within RULE_CACHE_MS);
// writes through this store clear this process's cache at once.

import { randomBytes } from "node:crypto";
import type { Collection, Db } from "mongodb";
import type { RuleView, SilenceView } from "./alert-schema.ts";

/** Rules one organization may have. */
export const MAX_RULES = 500;
export const RULE_CACHE_MS = 2000;

/** A rule as stored: its view's fields, under `_id`, in its organization. */
export interface RuleDoc extends Omit<RuleView, "ruleId"> {
  _id: string;
  tenantId: string;
}

/** A silence as stored: its view's fields but whether it is active now. */
export interface SilenceDoc extends Omit<SilenceView, "silenceId" | "active"> {
  _id: string;
  tenantId: string;
}

interface Cached<T> {
  until: number;
  value: T;
}

// Per database in this process, so every store (API, evaluators) shares one cache.
const caches = new WeakMap<
  Db,
  { rules: Map<string, Cached<RuleDoc[]>>; silences: Map<string, Cached<SilenceDoc[]>> }
>();

function cacheOf(db: Db) {
  const cache = caches.get(db) ?? {
    rules: new Map<string, Cached<RuleDoc[]>>(),
    silences: new Map<string, Cached<SilenceDoc[]>>(),
  };
  caches.set(db, cache);
  return cache;
}

export function silenceApplies(silence: SilenceDoc, ruleId: string, deviceId: string | null, at: number): boolean {
  return (
    silence.startsAt <= at &&
    at < silence.endsAt &&
    (silence.ruleId === null || silence.ruleId === ruleId) &&
    (silence.deviceId === null || silence.deviceId === deviceId)
  );
}

export class RuleStore {
  private readonly rules: Collection<RuleDoc>;
  private readonly silences: Collection<SilenceDoc>;

  constructor(
    private readonly db: Db,
    private readonly now: () => number = Date.now,
  ) {
    this.rules = db.collection<RuleDoc>("alert_rules");
    this.silences = db.collection<SilenceDoc>("alert_silences");
  }

  static async createIndexes(db: Db): Promise<void> {
    await db.collection<RuleDoc>("alert_rules").createIndex({ tenantId: 1, createdAt: 1 });
    await db.collection<SilenceDoc>("alert_silences").createIndex({ tenantId: 1, endsAt: 1 });
  }

  private forget(tenantId: string): void {
    const cache = cacheOf(this.db);
    cache.rules.delete(tenantId);
    cache.silences.delete(tenantId);
  }

  async create(fields: Omit<RuleDoc, "_id">): Promise<RuleDoc> {
    const doc: RuleDoc = { _id: `alr_${randomBytes(12).toString("base64url")}`, ...fields };
    await this.rules.insertOne(doc);
    this.forget(fields.tenantId);
    return doc;
  }

  count(tenantId: string): Promise<number> {
    return this.rules.countDocuments({ tenantId });
  }

  list(tenantId: string): Promise<RuleDoc[]> {
    return this.rules.find({ tenantId }).sort({ createdAt: 1, _id: 1 }).limit(MAX_RULES).toArray();
  }

  async find(tenantId: string, ruleId: string): Promise<RuleDoc | null> {
    const doc = await this.rules.findOne({ _id: ruleId });
    return doc?.tenantId === tenantId ? doc : null;
  }

  async replace(doc: RuleDoc): Promise<void> {
    await this.rules.replaceOne({ _id: doc._id, tenantId: doc.tenantId }, doc);
    this.forget(doc.tenantId);
  }

  async remove(tenantId: string, ruleId: string): Promise<boolean> {
    const result = await this.rules.deleteOne({ _id: ruleId, tenantId });
    this.forget(tenantId);
    return result.deletedCount === 1;
  }

  /** The tenant's enabled rules, cached briefly: evaluators ask on every pass. */
  async enabled(tenantId: string): Promise<RuleDoc[]> {
    const cache = cacheOf(this.db).rules;
    const hit = cache.get(tenantId);
    if (hit && hit.until > this.now()) return hit.value;
    const value = await this.rules.find({ tenantId, enabled: true }).toArray();
    cache.set(tenantId, { until: this.now() + RULE_CACHE_MS, value });
    return value;
  }

  /** Every organization's enabled rules of these kinds (the alert engine's sweep). */
  enabledOfKinds(kinds: readonly string[]): Promise<RuleDoc[]> {
    return this.rules.find({ enabled: true, "condition.kind": { $in: [...kinds] } }).toArray();
  }

  async createSilence(fields: Omit<SilenceDoc, "_id">): Promise<SilenceDoc> {
    const doc: SilenceDoc = { _id: `sil_${randomBytes(12).toString("base64url")}`, ...fields };
    await this.silences.insertOne(doc);
    this.forget(fields.tenantId);
    return doc;
  }

  /** Silences not yet over, soonest end first. */
  listSilences(tenantId: string): Promise<SilenceDoc[]> {
    return this.silences
      .find({ tenantId, endsAt: { $gt: this.now() } })
      .sort({ endsAt: 1 })
      .limit(MAX_RULES)
      .toArray();
  }

  async removeSilence(tenantId: string, silenceId: string): Promise<boolean> {
    const result = await this.silences.deleteOne({ _id: silenceId, tenantId });
    this.forget(tenantId);
    return result.deletedCount === 1;
  }

  /** Whether a silence mutes this rule and device at `at` (cached like the rules). */
  async silenced(tenantId: string, ruleId: string, deviceId: string | null, at: number): Promise<boolean> {
    const cache = cacheOf(this.db).silences;
    let hit = cache.get(tenantId);
    if (!hit || hit.until <= this.now()) {
      hit = { until: this.now() + RULE_CACHE_MS, value: await this.silences.find({ tenantId }).toArray() };
      cache.set(tenantId, hit);
    }
    return hit.value.some((silence) => silenceApplies(silence, ruleId, deviceId, at));
  }
}
