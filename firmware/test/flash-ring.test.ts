// The compiled flash ring in XS over the simulated NOR partition: order, wrap-around with the oldest
// dropped and counted, content across remounts, and a power cut in the middle of a write.

import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { FLASH_SECTOR_BYTES, FlashPartition } from "../sim/index.ts";
import type { HostPort } from "../sim/xs-machine.ts";
import { RESULT_PRELUDE, runInXs } from "./xs-harness.ts";

let dir: string;

before(() => {
  dir = mkdtempSync(join(tmpdir(), "kestrel-ring-"));
});

after(() => rmSync(dir, { recursive: true, force: true }));

/** Runs body (with `ring` open on partition "p") in XS; body reports with result({...}). */
async function withRing(port: HostPort, body: string): Promise<Record<string, unknown>[]> {
  const run = await runInXs(
    `import FlashRing from "kestrel/flash-ring";
${RESULT_PRELUDE}
export default function () {
  try {
    const ring = new FlashRing("p");
    ${body}
  } catch (error) {
    result({ error: error.message });
  }
}`,
    { ports: { flash: port } },
  );
  await run.machine.stop();
  return run.results();
}

/** A 300-byte batch naming n, so order is visible. */
const BATCH = `(n) => JSON.stringify({ n, pad: "x".repeat(280) })`;

test("keeps batches in order across remounts and marks them sent one by one", async () => {
  const flash = new FlashPartition({ name: "p", file: join(dir, "order.bin"), byteLength: 4 * FLASH_SECTOR_BYTES });
  const first = await withRing(
    flash,
    `const batch = ${BATCH};
    for (let n = 0; n < 30; n++) ring.push(batch(n), 5);
    ring.shift(); ring.shift();
    result({ size: ring.size, next: JSON.parse(ring.peek()).n, dropped: ring.dropped });`,
  );
  assert.deepEqual(first, [{ size: 28, next: 2, dropped: 0 }]);
  const second = await withRing(
    flash,
    `const seen = [];
    result({ size: ring.size });
    for (let batch = ring.peek(); batch !== undefined; batch = ring.peek()) { seen.push(JSON.parse(batch).n); ring.shift(); }
    result({ seen, size: ring.size });`,
  );
  flash.close();
  assert.deepEqual(second, [{ size: 28 }, { seen: Array.from({ length: 28 }, (_, i) => i + 2), size: 0 }]);
});

test("a full ring erases its oldest sector and counts the samples it held", async () => {
  const flash = new FlashPartition({ name: "p", file: join(dir, "wrap.bin"), byteLength: 3 * FLASH_SECTOR_BYTES });
  const results = await withRing(
    flash,
    `const batch = ${BATCH};
    for (let n = 0; n < 100; n++) ring.push(batch(n), 5);
    const seen = [];
    for (let b = ring.peek(); b !== undefined; b = ring.peek()) { seen.push(JSON.parse(b).n); ring.shift(); }
    result({ seen, dropped: ring.dropped });`,
  );
  flash.close();
  const [outcome] = results as [{ seen: number[]; dropped: number }];
  assert.ok(outcome.seen.length > 0 && outcome.seen.length < 100);
  assert.deepEqual(
    outcome.seen,
    Array.from({ length: outcome.seen.length }, (_, i) => 100 - outcome.seen.length + i),
    "the newest batches, in order",
  );
  assert.equal(outcome.dropped, (100 - outcome.seen.length) * 5, "every dropped batch's samples are counted");
});

test("a power cut in the middle of a write loses only that batch", async () => {
  const flash = new FlashPartition({ name: "p", file: join(dir, "cut.bin"), byteLength: 4 * FLASH_SECTOR_BYTES });
  let writes = 0;
  // Writes: sector header, then three per push (record header, payload, commit). The 9th is the
  // third push's payload: its header is in flash, its payload and commit never arrive.
  const cutting: HostPort = {
    handle(op, args) {
      if (op === "write" && ++writes === 9) throw new Error("power cut");
      return flash.handle(op, args);
    },
  };
  const cut = await withRing(
    cutting,
    `const batch = ${BATCH};
    ring.push(batch(0), 5); ring.push(batch(1), 5); ring.push(batch(2), 5);`,
  );
  assert.deepEqual(cut, [{ error: "power cut" }]);
  const after = await withRing(
    flash,
    `const batch = ${BATCH};
    result({ size: ring.size });
    ring.push(batch(3), 5);
    const seen = [];
    for (let b = ring.peek(); b !== undefined; b = ring.peek()) { seen.push(JSON.parse(b).n); ring.shift(); }
    result({ seen });`,
  );
  flash.close();
  assert.deepEqual(after, [{ size: 2 }, { seen: [0, 1, 3] }]);
});
