// Slot leases among replicas: a tenure is an unbroken run of slots held by this process, so what a
// holder keeps in memory of the job's work (the alert evaluator's states) is dropped whenever a slot
// in between may have been another replica's.

import assert from "node:assert/strict";
import { before, test } from "node:test";
import { SlotLease } from "../src/retention/lease.ts";
import type { Database } from "../src/storage/connect.ts";
import { ownFerretDb } from "./helpers.ts";

const ferret = ownFerretDb("lease");
// Two connections stand for two replicas (tenures are kept per process, by database handle).
let first: Database;
let second: Database;
before(async () => {
  first = await ferret.connect("lease");
  second = await ferret.connect("lease");
});

test("a tenure lasts while the same replica holds every slot, and ends at a slot it may not have held", async () => {
  let now = 100;
  const clock = () => now;
  const a = new SlotLease(first.db, "job", 1000, "replica-a", clock);
  const b = new SlotLease(second.db, "job", 1000, "replica-b", clock);
  const tenure = () => SlotLease.tenure(first.db, "job");

  assert.equal(await a.acquire(), true);
  const start = tenure();
  now = 1100;
  assert.equal(await a.acquire(), true);
  now = 1900;
  assert.equal(await a.acquire(500), true, "near the slot's end the holder takes the next one too");
  now = 2100;
  assert.equal(await a.acquire(), true);
  assert.equal(tenure(), start, "slots 0, 1 and 2 held in a row: one tenure");

  now = 3100;
  assert.equal(await b.acquire(), true, "the other replica takes slot 3");
  assert.equal(await a.acquire(), false);
  now = 4100;
  assert.equal(await a.acquire(), true);
  assert.equal(tenure(), start + 1, "slot 3 was another's: a new tenure");

  now = 6100;
  assert.equal(await a.acquire(), true);
  assert.equal(tenure(), start + 2, "nobody may have held slot 5, but this replica cannot know: a new tenure");
});
