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
  MongoError,
  MongoNetworkError,
  MongoNotConnectedError,
  MongoOperationTimeoutError,
  MongoRuntimeError,
  MongoServerClosedError,
  MongoServerError,
  MongoServerSelectionError,
  MongoTopologyClosedError,
} from "mongodb";

/**
 * The driver's classes for a server that does not answer (in time): none reached, the socket timed
 * out or closed (MongoNetworkTimeoutError and the pool-cleared errors are MongoNetworkErrors), the
 * client or server closed under the call (shutdown), a client-side timeout, or an answer the driver
 * could not make sense of (MongoRuntimeError: a reply cut off by a dying connection).
 */
const UNAVAILABLE_CLASSES = [
  MongoServerSelectionError,
  MongoNetworkError,
  MongoTopologyClosedError,
  MongoClientClosedError,
  MongoServerClosedError,
  MongoNotConnectedError,
  MongoOperationTimeoutError,
  MongoRuntimeError,
];
/**
 * The driver's errors it does not export, by their `name`: no free connection within
 * waitQueueTimeoutMS (every connection stuck on a stalled server), the pool cleared or closed under
 * the call.
 */
const UNAVAILABLE_NAMES = new Set([
  "MongoWaitQueueTimeoutError",
  "MongoPoolClearedError",
  "PoolClearedOnNetworkError",
  "MongoPoolClosedError",
]);
/**
 * Server error codes that say "not now" rather than "not this request": a time limit ran out, the
 * operation was interrupted (shutdown, step-down, killed), the node is shutting down, recovering or
 * not primary, or a host behind it did not answer.
 */
const UNAVAILABLE_CODES = new Set([
  6, // HostUnreachable
  7, // HostNotFound
  50, // MaxTimeMSExpired: a find's maxTimeMS ran out (FerretDB too)
  89, // NetworkTimeout
  91, // ShutdownInProgress
  189, // PrimarySteppedDown
  262, // ExceededTimeLimit
  9001, // SocketException
  10107, // NotWritablePrimary
  11600, // InterruptedAtShutdown
  11601, // Interrupted: "operation was interrupted"
  11602, // InterruptedDueToReplStateChange
  13435, // NotPrimaryNoSecondaryOk
  13436, // NotPrimaryOrSecondary
]);
/** The same, for an error that carries only the server's message. */
const UNAVAILABLE_MESSAGE =
  /operation was interrupted|interrupted at shutdown|node is recovering|not (?:master|primary)/i;
/** How deep a chain of `cause`s is followed (a driver error wrapped by the code that called it). */
const CAUSE_DEPTH = 4;

/** True for an error that says the database did not answer (in time), not that the request was wrong. */
export function isDatabaseUnavailable(error: unknown): boolean {
  let at = error;
  for (let depth = 0; depth <= CAUSE_DEPTH && at instanceof Error; depth++) {
    if (unavailable(at)) return true;
    at = at.cause;
  }
  return false;
}

function unavailable(error: Error): boolean {
  if (UNAVAILABLE_CLASSES.some((unavailableClass) => error instanceof unavailableClass)) return true;
  if (UNAVAILABLE_NAMES.has(error.name)) return true;
  if (error instanceof MongoServerError && typeof error.code === "number") return UNAVAILABLE_CODES.has(error.code);
  return error instanceof MongoError && UNAVAILABLE_MESSAGE.test(error.message);
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
