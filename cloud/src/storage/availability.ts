// Whether the database answers, and which driver errors mean it does not (or
// not in time): those become 503 `database_unavailable` in the API, never a
// hang and never a 500.
//
// Health and readiness ask on a connection of their own (DatabaseProbe), so a
// pool busy with the telemetry applier or a slow list does not make a healthy
// database look down, and a stopped one is reported within the probe's
// deadline whatever the pool is waiting for.

import {
  type Db,
  MongoClient,
  MongoClientClosedError,
  MongoNetworkError,
  MongoNotConnectedError,
  MongoServerError,
  MongoServerSelectionError,
  MongoTopologyClosedError,
} from "mongodb";

/** FerretDB and MongoDB answer this when a find's `maxTimeMS` ran out. */
const MAX_TIME_MS_EXPIRED = 50;
/** Driver errors not exported as classes: no free connection in time, the pool reset under an operation. */
const UNAVAILABLE_NAMES = new Set(["WaitQueueTimeoutError", "PoolClearedError", "PoolClearedOnNetworkError"]);

/** True for an error that says the database did not answer (in time), not that the request was wrong. */
export function isDatabaseUnavailable(error: unknown): boolean {
  if (!(error instanceof Error)) return false;
  return (
    error instanceof MongoServerSelectionError ||
    error instanceof MongoNetworkError ||
    error instanceof MongoTopologyClosedError ||
    error instanceof MongoClientClosedError ||
    error instanceof MongoNotConnectedError ||
    (error instanceof MongoServerError && error.code === MAX_TIME_MS_EXPIRED) ||
    UNAVAILABLE_NAMES.has(error.name)
  );
}

/** Pings the database on a connection of its own; a ping is answered within its deadline, up or down. */
export class DatabaseProbe {
  private readonly client: MongoClient | undefined;

  constructor(
    uri: string | undefined,
    private readonly dbName: string,
    private readonly fallback?: Db,
  ) {
    // One connection, nothing retried: the deadline below is the probe's answer time.
    this.client =
      uri === undefined
        ? undefined
        : new MongoClient(uri, {
            appName: "kestrel-cloud-probe",
            maxPoolSize: 1,
            serverSelectionTimeoutMS: 1_000,
            connectTimeoutMS: 1_000,
            retryReads: false,
          });
  }

  /** True when the database answered a ping within `deadlineMs`. */
  async ping(deadlineMs: number): Promise<boolean> {
    const db = this.client?.db(this.dbName) ?? this.fallback;
    if (!db) return false;
    try {
      await db.command({ ping: 1 }, { signal: AbortSignal.timeout(deadlineMs) });
      return true;
    } catch {
      return false;
    }
  }

  async close(): Promise<void> {
    await this.client?.close(true);
  }
}

const probes = new WeakMap<Db, DatabaseProbe>();

/** Called by connectDb: the probe health checks use for this database. */
export function registerProbe(db: Db, probe: DatabaseProbe): void {
  probes.set(db, probe);
}

/** The probe connectDb made for this database, or one that pings through the database's own pool. */
export function probeFor(db: Db): DatabaseProbe {
  let probe = probes.get(db);
  if (!probe) {
    probe = new DatabaseProbe(undefined, db.databaseName, db);
    probes.set(db, probe);
  }
  return probe;
}
