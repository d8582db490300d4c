// The journal's group commit: inserts that arrive while one is written go together in the next
// command, each caller answered for its own document.

import assert from "node:assert/strict";
import { before, test } from "node:test";
import type { Database } from "../src/storage/connect.ts";
import { GroupInsert } from "../src/storage/group-insert.ts";
import { commandsDuring, ownFerretDb } from "./helpers.ts";

const ferret = ownFerretDb("group-insert");
let database: Database;
before(async () => {
  database = await ferret.connect("group_insert");
});

/** The documents each insert command on `collection` carried, while `work` runs. */
async function insertCommands(collection: string, work: () => Promise<unknown>): Promise<number[]> {
  return (await commandsDuring(database.client, work))
    .filter(({ commandName, command }) => commandName === "insert" && command.insert === collection)
    .map(({ command }) => (command.documents as unknown[]).length);
}

test("inserts arriving while one is written go together in the next command", async () => {
  const docs = database.db.collection<{ _id: number }>("grouped");
  const inserts = new GroupInsert(docs);
  const sizes = await insertCommands("grouped", () =>
    Promise.all(Array.from({ length: 6 }, (_, i) => inserts.insert({ _id: i }))),
  );
  // The first goes at once; the five that came while it ran, in one command after it.
  assert.deepEqual(sizes, [1, 5]);
  assert.deepEqual(
    (await docs.find().sort({ _id: 1 }).toArray()).map(({ _id }) => _id),
    [0, 1, 2, 3, 4, 5],
  );
});

test("a refused document fails its own caller only", async () => {
  const docs = database.db.collection<{ _id: string }>("refused");
  await docs.insertOne({ _id: "taken" });
  const inserts = new GroupInsert(docs);
  const outcomes = await Promise.allSettled(["a", "b", "taken", "c"].map((_id) => inserts.insert({ _id })));
  assert.deepEqual(
    outcomes.map(({ status }) => status),
    ["fulfilled", "fulfilled", "rejected", "fulfilled"],
  );
  assert.deepEqual(
    (await docs.find().sort({ _id: 1 }).toArray()).map(({ _id }) => _id),
    ["a", "b", "c", "taken"],
  );
});
