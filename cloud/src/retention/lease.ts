// Leadership among cloud replicas for background jobs, with nothing but a
// unique-key insert (atomic on MongoDB and FerretDB alike): time is cut into
// slots, and whoever first inserts `<job>|<slot>` holds the job for that slot.
// There is no renewal or takeover to race on; a holder that dies loses the job
// at the end of its slot. Replica clocks must agree to well within a slot, and
// work done under a lease must be short compared with the slot.

import { hostname } from "node:os";
import type { Collection, Db } from "mongodb";

const DUPLICATE_KEY = 11000;

interface LeaseDoc {
  _id: string;
  job: string;
  slot: number;
  holder: string;
  at: Date;
}

/**
 * Per database and job, in this process: the last slot held, and the tenure, counted up whenever a
 * slot is claimed that does not follow the last one held (a slot in between may have been another
 * holder's). Per process, not per lease object: every store of this process is the same holder.
 */
const tenures = new WeakMap<Db, Map<string, { slot: number; tenure: number }>>();

function tenureRecord(db: Db, job: string): { slot: number; tenure: number } {
  const jobs = tenures.get(db) ?? new Map<string, { slot: number; tenure: number }>();
  tenures.set(db, jobs);
  const record = jobs.get(job) ?? { slot: Number.NEGATIVE_INFINITY, tenure: 0 };
  jobs.set(job, record);
  return record;
}

/** One holder id per process: every store of this process acts as the same replica. */
export const PROCESS_HOLDER = `${hostname()}:${process.pid}:${Math.random().toString(36).slice(2, 10)}`;

export class SlotLease {
  private readonly leases: Collection<LeaseDoc>;
  private heldSlot = -1;

  constructor(
    private readonly db: Db,
    readonly job: string,
    readonly slotMs: number,
    readonly holder = PROCESS_HOLDER,
    private readonly now: () => number = Date.now,
  ) {
    this.leases = db.collection<LeaseDoc>("job_leases");
  }

  /**
   * True when this holder holds the job for at least `workMs` from now: the current slot, claimed
   * if nobody has, and, near its end, the next one too, so a steady holder keeps the job without a gap.
   * Only the holder of a slot claims the next one early, so two holders never overlap.
   */
  /**
   * This process's tenure of the job: unchanged while it has held every slot since, so nobody else
   * did the job's work in between (what it holds in memory of that work is still the truth).
   */
  static tenure(db: Db, job: string): number {
    return tenureRecord(db, job).tenure;
  }

  async acquire(workMs = 0): Promise<boolean> {
    const now = this.now();
    const slot = Math.floor(now / this.slotMs);
    if (this.heldSlot < slot && !(await this.claim(slot))) return false;
    const remaining = (slot + 1) * this.slotMs - now;
    if (remaining >= workMs || this.heldSlot > slot) return true;
    return this.claim(slot + 1);
  }

  private async claim(slot: number): Promise<boolean> {
    const _id = `${this.job}|${slot}`;
    try {
      await this.leases.insertOne({ _id, job: this.job, slot, holder: this.holder, at: new Date(this.now()) });
    } catch (error) {
      if ((error as { code?: number }).code !== DUPLICATE_KEY) throw error;
      const lease = await this.leases.findOne({ _id });
      if (lease?.holder !== this.holder) return false;
    }
    this.heldSlot = slot;
    const record = tenureRecord(this.db, this.job);
    if (slot > record.slot + 1) record.tenure++;
    record.slot = Math.max(record.slot, slot);
    // Earlier slots of this job are history; the holder tidies them.
    await this.leases.deleteMany({ job: this.job, slot: { $lt: slot - 1 } });
    return true;
  }
}
