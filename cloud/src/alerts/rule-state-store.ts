// The evaluators' per-device rule states: `alert_sample_states` (threshold and rate rules, written
// only in the telemetry apply pass) and `alert_device_states` (offline, safe mode, watchdog resets,
// written only by the alert engine), one document per device each, so each has one writer.
// A document's rule states are stored as one JSON string (`packed`): with a hundred rules a device
// holds a hundred nested states, which FerretDB stores and validates field by field on every
// write (the sample states are written on most apply passes); a string it stores as it is.

import type { AnyBulkWriteOperation, Collection, Db, Filter } from "mongodb";
import { boundedBulkWrite } from "../storage/command-bounds.ts";
import { pointReads } from "../storage/point-reads.ts";
import type { RuleState } from "./conditions.ts";

export interface RuleStatesDoc {
  _id: string;
  tenantId: string;
  /** The device, or a system subject. */
  subject: string;
  rules: Record<string, RuleState>;
}

export interface DeviceTrackDoc extends RuleStatesDoc {
  /** The device's connection as the engine last saw it, for device.online/offline events. */
  online: boolean | null;
  /** Gateway receive time of the last state applied; older ones are late and skipped. */
  stateAt: number;
  boot: number | null;
  /** Times of watchdog resets seen, newest last, pruned to the longest window of the rules. */
  watchdogResets: number[];
}

/** As stored: the rule states packed (documents written before packing hold `rules` itself, read as such). */
interface Packed {
  packed?: string;
}

function pack<T extends RuleStatesDoc>({ rules, ...doc }: T): T {
  return { ...doc, packed: JSON.stringify(rules) } as unknown as T;
}

export function stateDocId(tenantId: string, subject: string): string {
  return `${tenantId}|${subject}`;
}

export class RuleStateStore<T extends RuleStatesDoc> {
  private readonly states: Collection<T>;

  constructor(db: Db, collection: "alert_sample_states" | "alert_device_states" | "alert_system_states") {
    this.states = db.collection<T>(collection);
  }

  async read(ids: string[]): Promise<Map<string, T>> {
    const docs = (await pointReads(this.states, ids)) as Array<T & Packed>;
    return new Map(
      docs.map(({ packed, ...doc }) => [
        doc._id,
        (packed === undefined ? doc : { ...doc, rules: JSON.parse(packed) }) as T,
      ]),
    );
  }

  async write(docs: T[]): Promise<void> {
    // One document per device of the pass: as many as the fleet, so in bounded commands.
    await boundedBulkWrite(
      this.states,
      docs.map(
        (doc): AnyBulkWriteOperation<T> => ({
          replaceOne: { filter: { _id: doc._id } as Filter<T>, replacement: pack(doc), upsert: true },
        }),
      ),
    );
  }
}
