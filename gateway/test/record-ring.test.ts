// The disk queue's positions of records not yet acknowledged: FIFO order kept across wrap-around
// and growth, tags handed back as records are forgotten.

import assert from "node:assert/strict";
import { test } from "node:test";
import { RecordRing } from "../src/uplink/record-ring.ts";

test("records come back oldest first across wrap-around and growth, and shift hands back their tags", () => {
  const ring = new RecordRing<string>();
  const expected: number[] = [];
  const forgotten: string[] = [];
  let next = 0;
  // Push 3 and forget 2 at a time past the initial capacity, so the ring wraps and then grows.
  for (let round = 0; round < 2000; round++) {
    for (let i = 0; i < 3; i++) {
      ring.push(next % 7, next * 10, next, next % 2 === 0 ? `tag-${next}` : undefined);
      expected.push(next++);
    }
    ring.shift(2, (tag) => forgotten.push(tag));
    for (const gone of expected.splice(0, 2)) if (gone % 2 === 0) assert.equal(forgotten.pop(), `tag-${gone}`);
  }
  assert.equal(ring.length, expected.length);
  assert.deepEqual(
    ring.slice(0, 5).map((entry) => entry.length),
    expected.slice(0, 5),
  );
  const at = ring.at(ring.length - 1);
  const last = expected.at(-1) as number;
  assert.deepEqual(at, {
    segment: last % 7,
    start: last * 10,
    length: last,
    tag: last % 2 === 0 ? `tag-${last}` : undefined,
  });
  assert.equal(ring.at(ring.length), undefined);
  ring.shift(ring.length + 5, () => undefined);
  assert.equal(ring.length, 0);
  assert.deepEqual(ring.slice(0, 10), []);
});
