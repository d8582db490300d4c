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

/** One holder id per process: every store of this process acts as the same replica. */
export const PROCESS_HOLDER = `${hostname()}:${process.pid}:${Math.random().toString(36).slice(2, 10)}`;

export class SlotLease {
  private readonly leases: Collection<LeaseDoc>;
  private heldSlot = -1;

  constructor(
    db: Db,
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
    // Earlier slots of this job are history; the holder tidies them.
    await this.leases.deleteMany({ job: this.job, slot: { $lt: slot - 1 } });
    return true;
  }
}
