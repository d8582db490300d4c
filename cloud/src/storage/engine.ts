// Which server a database is on: FerretDB (the embedded default) or MongoDB.
// Stores choose their layout by it where the two differ in what they can do
// fast (FerretDB v1 answers only `_id` equality from an index).

import type { Db } from "mongodb";

const ferret = new WeakSet<Db>();

/** Asks the server (FerretDB adds `ferretdbVersion` to buildInfo) and remembers the answer for this Db. */
export async function detectEngine(db: Db): Promise<void> {
  const info = await db.admin().command({ buildInfo: 1 });
  if (typeof info.ferretdbVersion === "string") ferret.add(db);
  else ferret.delete(db);
}

/** True when connectDb found FerretDB behind this Db. */
export function isFerretDb(db: Db): boolean {
  return ferret.has(db);
}
