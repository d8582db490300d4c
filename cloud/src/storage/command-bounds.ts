// How much one database command may carry, for every store: the embedded
// default must never receive a command that can wedge it.
//
// FerretDB v1.24 runs the statements of an `update` command one after the
// other and keeps each statement's query (one backend connection) open until
// the whole command ends, while each write takes one more connection. Its
// SQLite pool has 100 connections per database (PostgreSQL: pool_max_conns,
// which we set to the same), so one update of 100 statements waits forever for
// a connection it holds itself, and from then on every query of the server
// hangs. Concurrent update commands add up the same way, so the bound is on
// the sum: at most MAX_POOL_SIZE commands in flight per client (connect.ts),
// each of at most UPDATE_STATEMENTS statements, 12 x 4 = 48 connections held
// at worst per cloud process, leaving room for a second process and for reads.
// Inserts and deletes hold no connection between statements; they are bounded
// too, so that no command of ours grows with the fleet.

import {
  type AnyBulkWriteOperation,
  type BulkWriteOptions,
  type Collection,
  type Document,
  MongoBulkWriteError,
  type OptionalUnlessRequiredId,
  type WriteError,
} from "mongodb";
import { shared } from "./pool-share.ts";

/** Update (and replace) statements per command: see the pool arithmetic above. */
export const UPDATE_STATEMENTS = 4;
/** Documents per insert command and statements per delete command. */
export const INSERT_OR_DELETE_STATEMENTS = 50;
/** Connections one client opens at most (and so commands in flight at once). */
export const MAX_POOL_SIZE = 12;
/** Commands one bulk operation keeps in flight at once: a share of the pool, not all of it. */
const BULK_CONCURRENCY = 3;

function statementsFor(operation: AnyBulkWriteOperation<Document>): number {
  return "insertOne" in operation || "deleteOne" in operation || "deleteMany" in operation
    ? INSERT_OR_DELETE_STATEMENTS
    : UPDATE_STATEMENTS;
}

/** The operations in runs of one kind, each run no longer than that kind's bound. */
function commands<T extends Document>(operations: AnyBulkWriteOperation<T>[]): AnyBulkWriteOperation<T>[][] {
  const runs: AnyBulkWriteOperation<T>[][] = [];
  let run: AnyBulkWriteOperation<T>[] = [];
  let bound = 0;
  for (const operation of operations) {
    const own = statementsFor(operation as AnyBulkWriteOperation<Document>);
    if (run.length > 0 && (own !== bound || run.length >= bound)) {
      runs.push(run);
      run = [];
    }
    bound = own;
    run.push(operation);
  }
  if (run.length > 0) runs.push(run);
  return runs;
}

/** Runs the jobs, at most `limit` at a time; rejects with the first failure once all have settled. */
async function inFlight(jobs: Array<() => Promise<unknown>>, limit: number): Promise<void> {
  let next = 0;
  let failure: unknown;
  const worker = async () => {
    while (next < jobs.length) {
      const job = jobs[next++] as () => Promise<unknown>;
      try {
        await job();
      } catch (error) {
        failure ??= error;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, jobs.length) }, worker));
  if (failure !== undefined) throw failure;
}

/**
 * An unordered bulk write sent as bounded commands, a few at a time. Like `bulkWrite` with
 * `ordered: false` the operations are independent; the first error is thrown once every command
 * has been answered, so a failure never leaves commands still running behind the caller's back.
 */
export async function boundedBulkWrite<T extends Document>(
  collection: Collection<T>,
  operations: AnyBulkWriteOperation<T>[],
  options: BulkWriteOptions = {},
): Promise<void> {
  await inFlight(
    commands(operations).map((run) => () => shared(() => collection.bulkWrite(run, { ...options, ordered: false }))),
    BULK_CONCURRENCY,
  );
}

/**
 * `insertMany` in bounded commands, unordered: every document is tried. Answers the write errors
 * (duplicate keys, say) of all commands together; any other failure is thrown once every command
 * has been answered.
 */
export async function boundedInsertMany<T extends Document>(
  collection: Collection<T>,
  docs: OptionalUnlessRequiredId<T>[],
): Promise<WriteError[]> {
  const writeErrors: WriteError[] = [];
  const jobs: Array<() => Promise<unknown>> = [];
  for (let i = 0; i < docs.length; i += INSERT_OR_DELETE_STATEMENTS) {
    const chunk = docs.slice(i, i + INSERT_OR_DELETE_STATEMENTS);
    jobs.push(async () => {
      try {
        await shared(() => collection.insertMany(chunk, { ordered: false }));
      } catch (error) {
        if (!(error instanceof MongoBulkWriteError)) throw error;
        writeErrors.push(...[error.writeErrors].flat());
      }
    });
  }
  await inFlight(jobs, BULK_CONCURRENCY);
  return writeErrors;
}
