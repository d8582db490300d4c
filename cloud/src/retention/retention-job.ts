// Deletes telemetry older than each organization keeps it
// (tenants.settings.retention): hourly raw buckets, with the minute rollups
// they hold, after `rawDays`; hour and day rollups after `rollupDays`. Safe
// with several cloud replicas: a run happens only under the job's SlotLease,
// so one replica deletes per slot and the others skip.

import type { Db } from "mongodb";
import type { Logger } from "pino";
import { DAY_MS, floorTo, HOUR_MS } from "../telemetry/rollups.ts";
import { type TenantDoc, withDefaults } from "../tenants/tenant-store.ts";
import { SlotLease } from "./lease.ts";

/** One run per slot at most, whichever replica gets there first. */
export const RETENTION_SLOT_MS = 10 * 60_000;

export interface RetentionRun {
  tenants: number;
  buckets: number;
  rollups: number;
}

export class RetentionJob {
  private readonly lease: SlotLease;

  constructor(
    private readonly db: Db,
    private readonly logger: Pick<Logger, "info">,
    options: { holder?: string; now?: () => number } = {},
  ) {
    this.now = options.now ?? Date.now;
    this.lease = new SlotLease(db, "telemetry-retention", RETENTION_SLOT_MS, options.holder, this.now);
  }

  private readonly now: () => number;

  /** Deletes what is past retention if this replica holds the job now; undefined when another does. */
  async runOnce(): Promise<RetentionRun | undefined> {
    if (!(await this.lease.acquire())) return undefined;
    const now = this.now();
    const run: RetentionRun = { tenants: 0, buckets: 0, rollups: 0 };
    for await (const tenant of this.db.collection<TenantDoc>("tenants").find({})) {
      const { rawDays, rollupDays } = withDefaults(tenant).retention;
      const rawCutoff = floorTo(now - rawDays * DAY_MS, HOUR_MS);
      const rollupCutoff = floorTo(now - rollupDays * DAY_MS, DAY_MS);
      const tenantId = tenant._id;
      run.tenants++;
      run.buckets += (
        await this.db.collection("telemetry_buckets").deleteMany({ tenantId, hour: { $lt: rawCutoff } })
      ).deletedCount;
      // An hour-rollup document spans a day, a day-rollup document a year: both go once wholly past the cutoff.
      run.rollups += (
        await this.db
          .collection("telemetry_rollups")
          .deleteMany({ tenantId, level: "1h", start: { $lt: rollupCutoff - DAY_MS + 1 } })
      ).deletedCount;
      const yearCutoff = Date.UTC(new Date(rollupCutoff).getUTCFullYear(), 0, 1);
      run.rollups += (
        await this.db.collection("telemetry_rollups").deleteMany({ tenantId, level: "1d", start: { $lt: yearCutoff } })
      ).deletedCount;
    }
    this.logger.info(run, "telemetry retention run");
    return run;
  }
}
