// The device states ingest applied, journalled for the alert engine (one insert per ingest request
// that carries states), so connection, safe-mode and reset changes are evaluated in order by one
// replica at a time, whichever replica ingested them.

import type { DeviceState } from "@kestrel/wire";
import { type Collection, type Db, ObjectId } from "mongodb";
import { boundedBulkWrite } from "../storage/command-bounds.ts";

export interface JournalledState {
  deviceId: string;
  receivedAt: number;
  state: DeviceState;
}

export interface StateJournalDoc {
  _id: ObjectId;
  tenantId: string;
  states: JournalledState[];
}

export class DeviceStateJournal {
  private readonly journal: Collection<StateJournalDoc>;

  constructor(db: Db) {
    this.journal = db.collection<StateJournalDoc>("device_state_journal");
  }

  async append(tenantId: string, states: JournalledState[]): Promise<void> {
    if (states.length > 0) await this.journal.insertOne({ _id: new ObjectId(), tenantId, states });
  }

  next(limit: number): Promise<StateJournalDoc[]> {
    return this.journal.find({}).limit(limit).toArray();
  }

  async remove(docs: StateJournalDoc[]): Promise<void> {
    await boundedBulkWrite(
      this.journal,
      docs.map(({ _id }) => ({ deleteOne: { filter: { _id } } })),
    );
  }
}
