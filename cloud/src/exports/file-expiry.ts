// Deletes stored export files once expired (EXPORT_FILE_TTL_DAYS after their run): the chunks, then
// the run's chunk count, so a later download answers 410. The run record stays as history. Safe with
// several replicas: a pass happens only under the job's SlotLease, as retention does.

import type { Db } from "mongodb";
import type { Logger } from "pino";
import { SlotLease } from "../retention/lease.ts";
import { ExportFileStore } from "./export-file-store.ts";
import { ExportRunStore } from "./run-store.ts";

/** One pass per slot at most, whichever replica gets there first. */
export const FILE_EXPIRY_SLOT_MS = 10 * 60_000;
const PAGE = 200;

export class ExportFileExpiry {
  private readonly lease: SlotLease;
  private readonly runs: ExportRunStore;
  private readonly files: ExportFileStore;
  private readonly now: () => number;

  constructor(
    db: Db,
    private readonly logger: Pick<Logger, "info">,
    options: { holder?: string; now?: () => number } = {},
  ) {
    this.now = options.now ?? Date.now;
    this.lease = new SlotLease(db, "export-file-expiry", FILE_EXPIRY_SLOT_MS, options.holder, this.now);
    this.runs = new ExportRunStore(db);
    this.files = new ExportFileStore(db);
  }

  /** The number of files deleted, or undefined when another replica holds this slot. */
  async runOnce(): Promise<number | undefined> {
    if (!(await this.lease.acquire())) return undefined;
    const now = new Date(this.now());
    let deleted = 0;
    for (;;) {
      const expired = await this.runs.expiredFiles(now, PAGE);
      for (const run of expired) {
        await this.files.discard(run._id, run.chunks ?? 0);
        await this.runs.fileDeleted(run._id, now);
      }
      deleted += expired.length;
      if (expired.length < PAGE) break;
    }
    if (deleted > 0) this.logger.info({ files: deleted }, "expired export files deleted");
    return deleted;
  }
}
