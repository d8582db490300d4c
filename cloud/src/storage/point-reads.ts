// Many documents read by `_id`, the one lookup FerretDB v1 answers from an
// index: a few reads in flight at once, a share of the connection pool.

import type { Collection, Document, Filter } from "mongodb";
import { shared } from "./pool-share.ts";

/** Reads in flight at once. */
const READ_CONCURRENCY = 8;

/** The documents with these ids that exist, in the order of the ids. */
export async function pointReads<T extends Document & { _id: string }>(
  collection: Collection<T>,
  ids: readonly string[],
  projection?: Record<string, 0 | 1>,
): Promise<T[]> {
  const found: Array<T | null> = new Array(ids.length).fill(null);
  let next = 0;
  const worker = async () => {
    while (next < ids.length) {
      const index = next++;
      found[index] = (await shared(() =>
        collection.findOne({ _id: ids[index] } as Filter<T>, { projection }),
      )) as T | null;
    }
  };
  await Promise.all(Array.from({ length: Math.min(READ_CONCURRENCY, ids.length) }, worker));
  return found.filter((doc): doc is T => doc !== null);
}
