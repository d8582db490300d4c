// The RAM outbox that holds serialized batches while the broker is unreachable.

import assert from "node:assert/strict";
import { test } from "node:test";
import Outbox from "../src/outbox.ts";

test("is first in, first out", () => {
  const outbox = new Outbox(3);
  outbox.push("a");
  outbox.push("b");
  assert.equal(outbox.peek(), "a");
  assert.equal(outbox.shift(), "a");
  outbox.push("c");
  outbox.push("d");
  assert.deepEqual([outbox.shift(), outbox.shift(), outbox.shift(), outbox.shift()], ["b", "c", "d", undefined]);
  assert.equal(outbox.size, 0);
});

test("drops the oldest item when full and counts the drops", () => {
  const outbox = new Outbox(2);
  assert.equal(outbox.push("a"), false);
  assert.equal(outbox.push("b"), false);
  assert.equal(outbox.push("c"), true);
  assert.equal(outbox.push("d"), true);
  assert.equal(outbox.dropped, 2);
  assert.equal(outbox.size, 2);
  assert.deepEqual([outbox.shift(), outbox.shift()], ["c", "d"]);
});

test("refuses a capacity below one", () => {
  assert.throws(() => new Outbox(0), /capacity must be >= 1/);
});
