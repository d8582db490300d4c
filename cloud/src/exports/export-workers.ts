// Exports are encoded in worker threads, each with its own heap of bounded size and its own
// connection to the database. An export reads every hourly bucket of its range and turns it into
// rows: hundreds of MB of short-lived strings and objects for a million rows. In the API's own
// heap that garbage outlived young collections (a bucket is alive while it is encoded) and grew
// the old generation until V8 chose to collect it: the process's memory grew with the export's
// length, by more on a busy machine, where V8's concurrent marking falls behind. A worker's heap
// limits bound that growth whatever the length; the API's event loop and heap only pass buffers on.
//
// Flow control: a worker may send WINDOW chunks ahead of what the reader has taken; each chunk the
// reader takes gives one credit back. At most MAX_EXPORT_WORKERS exports are encoded at once per process,
// the others wait their turn.

import { Readable } from "node:stream";
import { Worker } from "node:worker_threads";
import type { Db } from "mongodb";
import { type DatabaseAddress, databaseAddress } from "../storage/connect.ts";
import type { ExportTally } from "./export-format.ts";
import type { ExportScope } from "./telemetry-export.ts";

export const MAX_EXPORT_WORKERS = 2;
/** Chunks (of about 64 KiB) a worker may have in flight to its reader. */
const WINDOW = 4;
/**
 * A worker's heap: room for the largest hourly bucket's samples and rows many times over (a bucket
 * of 3,600 samples is about 2 MB parsed), small next to the API's.
 */
export const EXPORT_WORKER_LIMITS = { maxOldGenerationSizeMb: 32, maxYoungGenerationSizeMb: 8 } as const;

export interface ExportJob {
  tenantId: string;
  scope: ExportScope;
}

/** Parent to worker. */
export type ToWorker = { type: "start"; job: ExportJob } | { type: "more"; credits: number } | { type: "cancel" };

/** Worker to parent; `done` ends every job, whatever came before it. */
export type FromWorker =
  | { type: "chunk"; bytes: Uint8Array }
  | { type: "end"; tally: ExportTally }
  | { type: "error"; message: string }
  | { type: "done" };

export interface WorkerData extends DatabaseAddress {
  window: number;
}

/** The bytes of one export as they come from its worker. */
class ExportStream extends Readable {
  /** Credits taken by chunks the reader has received but not yet given back. */
  private owed = 0;
  private worker: Worker | undefined;
  /** The worker sent its last word for this export (end or error). */
  private settled = false;

  constructor(private readonly tally: ExportTally) {
    super({ highWaterMark: 64 * 1024 });
  }

  attach(worker: Worker): void {
    this.worker = worker;
  }

  received(message: FromWorker): void {
    if (message.type === "chunk") {
      this.owed++;
      this.push(Buffer.from(message.bytes.buffer, message.bytes.byteOffset, message.bytes.byteLength));
    } else if (message.type === "end") {
      this.settled = true;
      Object.assign(this.tally, message.tally);
      this.push(null);
    } else if (message.type === "error") {
      this.settled = true;
      this.destroy(new Error(message.message));
    }
  }

  override _read(): void {
    if (this.owed === 0 || !this.worker) return;
    this.worker.postMessage({ type: "more", credits: this.owed } satisfies ToWorker);
    this.owed = 0;
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    // A reader that stops early (a client gone) stops the encoding; the worker then says done.
    if (!this.settled) this.worker?.postMessage({ type: "cancel" } satisfies ToWorker);
    callback(error);
  }
}

/** One process's export workers over one database. */
class ExportWorkers {
  private readonly idle: Worker[] = [];
  private readonly all = new Set<Worker>();
  private readonly waiting: Array<(worker: Worker | Error) => void> = [];

  constructor(private readonly address: DatabaseAddress) {}

  /** The export's bytes; `before` runs first (the caller's read barrier). */
  stream(job: ExportJob, tally: ExportTally, before: () => Promise<void>): Readable {
    const stream = new ExportStream(tally);
    before()
      .then(() => this.acquire())
      .then((worker) => this.run(worker, job, stream))
      .catch((error: Error) => stream.destroy(error));
    return stream;
  }

  /** Workers running, of them encoding an export, and exports waiting for one. */
  stats(): { workers: number; busy: number; waiting: number } {
    return { workers: this.all.size, busy: this.all.size - this.idle.length, waiting: this.waiting.length };
  }

  /** Stops every worker; exports in progress fail, the next export starts new workers. */
  async close(): Promise<void> {
    for (const wait of this.waiting.splice(0)) wait(new Error("export workers closed"));
    const workers = [...this.all];
    this.all.clear();
    this.idle.length = 0;
    await Promise.all(workers.map((worker) => worker.terminate()));
  }

  private run(worker: Worker, job: ExportJob, stream: ExportStream): void {
    if (stream.destroyed) {
      this.release(worker);
      return;
    }
    stream.attach(worker);
    const onMessage = (message: FromWorker) => {
      if (message.type !== "done") {
        stream.received(message);
        return;
      }
      detach();
      this.release(worker);
    };
    // A worker that dies (its heap limit reached, say) fails its export and is replaced on demand.
    const onExit = (code: number) => {
      detach();
      this.all.delete(worker);
      stream.destroy(new Error(`the export worker stopped (exit code ${code})`));
      this.hand();
    };
    const onError = (error: Error) => stream.destroy(new Error(`the export worker failed: ${error.message}`));
    const detach = () => {
      worker.off("message", onMessage);
      worker.off("exit", onExit);
      worker.off("error", onError);
    };
    worker.on("message", onMessage);
    worker.on("exit", onExit);
    worker.on("error", onError);
    worker.postMessage({ type: "start", job } satisfies ToWorker);
  }

  /** A worker for this export: at once if one is free or may be started, else in turn. */
  private acquire(): Promise<Worker> {
    return new Promise((resolve, reject) => {
      this.waiting.push((next) => (next instanceof Error ? reject(next) : resolve(next)));
      this.hand();
    });
  }

  private release(worker: Worker): void {
    if (!this.all.has(worker)) return;
    this.idle.push(worker);
    this.hand();
  }

  /** Gives a free worker (or a new one, if there is room) to the longest-waiting export. */
  private hand(): void {
    while (this.waiting.length > 0) {
      const worker = this.idle.pop() ?? (this.all.size < MAX_EXPORT_WORKERS ? this.spawn() : undefined);
      if (!worker) return;
      this.waiting.shift()?.(worker);
    }
  }

  private spawn(): Worker {
    const workerData: WorkerData = { ...this.address, window: WINDOW };
    const worker = new Worker(new URL("./export-worker.ts", import.meta.url), {
      workerData,
      resourceLimits: EXPORT_WORKER_LIMITS,
    });
    // Idle workers never keep the process alive; their exports' sockets do while they run.
    worker.unref();
    this.all.add(worker);
    return worker;
  }
}

const pools = new WeakMap<Db, ExportWorkers>();

/** The export workers of this database, for this process. */
export function exportWorkers(db: Db): ExportWorkers {
  let pool = pools.get(db);
  if (!pool) {
    const address = databaseAddress(db);
    if (!address) throw new Error("exports need a database opened with connectDb (its address is not known)");
    pool = new ExportWorkers(address);
    pools.set(db, pool);
  }
  return pool;
}

/** Stops this database's export workers (the app's close). */
export async function closeExportWorkers(db: Db): Promise<void> {
  await pools.get(db)?.close();
}
