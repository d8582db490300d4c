// The compiled flash ring in XS over the simulated NOR partition: order, wrap-around with the oldest
// dropped and counted, content across remounts, a power cut in the middle of a write, and batches in
// flight: confirmed by cumulative acks, sent again after a rewind, dropped by an overflow, replayed
// after a power cut.

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

/** Sends every batch peek() offers, keyed (boot 1, seq n), and returns their n in order. */
const SEND_ALL = `(ring) => { const sent = []; for (let b = ring.peek(); b !== undefined; b = ring.peek()) { const n = JSON.parse(b).n; sent.push(n); ring.sent(1, n); } return sent; }`;

test("a cumulative ack confirms in-flight batches in order; a rewind sends the unconfirmed ones again", async () => {
  const flash = new FlashPartition({ name: "p", file: join(dir, "ack.bin"), byteLength: 4 * FLASH_SECTOR_BYTES });
  const results = await withRing(
    flash,
    `const batch = ${BATCH};
    const sendAll = ${SEND_ALL};
    for (let n = 0; n < 6; n++) ring.push(batch(n), 5);
    const sent = [];
    for (let i = 0; i < 4; i++) { const n = JSON.parse(ring.peek()).n; sent.push(n); ring.sent(1, n); }
    result({ sent, size: ring.size, inFlight: ring.inFlight, unsent: ring.unsent, next: JSON.parse(ring.peek()).n });
    const confirmed = ring.confirm(1, 1);
    result({ confirmed, stale: ring.confirm(1, 0), size: ring.size, inFlight: ring.inFlight });
    ring.rewind();
    const resent = sendAll(ring);
    result({ resent, inFlight: ring.inFlight, unsent: ring.unsent });
    result({ confirmed: ring.confirm(1, 5), size: ring.size, next: ring.peek() === undefined });`,
  );
  const remounted = await withRing(flash, `result({ size: ring.size });`);
  flash.close();
  assert.deepEqual(results, [
    { sent: [0, 1, 2, 3], size: 6, inFlight: 4, unsent: 2, next: 4 },
    { confirmed: 2, stale: 0, size: 4, inFlight: 2 },
    { resent: [2, 3, 4, 5], inFlight: 4, unsent: 0 },
    { confirmed: 4, size: 0, next: true },
  ]);
  assert.deepEqual(remounted, [{ size: 0 }], "confirmed batches are released in flash");
});

test("acks are ordered by boot, then seq, and the in-flight window is bounded", async () => {
  const flash = new FlashPartition({ name: "p", file: join(dir, "boots.bin"), byteLength: 8 * FLASH_SECTOR_BYTES });
  const results = await withRing(
    flash,
    `const batch = ${BATCH};
    ring.push(batch(0), 5); ring.push(batch(1), 5);
    ring.peek(); ring.sent(1, 900);
    ring.peek(); ring.sent(2, 4);
    result({ newerSeqOlderBoot: ring.confirm(1, 5000), inFlight: ring.inFlight });
    result({ below: ring.confirm(2, 3), at: ring.confirm(2, 4), size: ring.size });
    for (let n = 0; n < 17; n++) ring.push(batch(n), 5);
    let inFlight = 0;
    try { for (;;) { ring.peek(); ring.sent(3, inFlight); inFlight++; } }
    catch (error) { result({ inFlight, error: error.message, unsent: ring.unsent }); }`,
  );
  flash.close();
  assert.deepEqual(results, [
    { newerSeqOlderBoot: 1, inFlight: 1 },
    { below: 0, at: 1, size: 0 },
    { inFlight: 16, error: "flash ring: too many batches in flight", unsent: 1 },
  ]);
});

test("an overflow drops in-flight batches with their sector and keeps both cursors consistent", async () => {
  // 13 records of 304 bytes per 4 KB sector: 0..12 in sector 0, 13..25 in sector 1, 26..38 in sector 2.
  const flash = new FlashPartition({
    name: "p",
    file: join(dir, "flight-wrap.bin"),
    byteLength: 3 * FLASH_SECTOR_BYTES,
  });
  const results = await withRing(
    flash,
    `const batch = ${BATCH};
    const sendAll = ${SEND_ALL};
    for (let n = 0; n < 16; n++) ring.push(batch(n), 5);
    for (let i = 0; i < 16; i++) ring.sent(1, JSON.parse(ring.peek()).n);
    ring.confirm(1, 10);
    // In flight: 11, 12 (sector 0) and 13..15 (sector 1). Batch 39 needs sector 0 back.
    for (let n = 16; n < 40; n++) ring.push(batch(n), 5);
    result({ size: ring.size, inFlight: ring.inFlight, unsent: ring.unsent, dropped: ring.dropped, next: JSON.parse(ring.peek()).n });
    result({ confirmed: ring.confirm(1, 14), inFlight: ring.inFlight });
    ring.rewind();
    const seen = [];
    for (let b = ring.peek(); b !== undefined; b = ring.peek()) { const n = JSON.parse(b).n; seen.push(n); ring.sent(1, n); ring.confirm(1, n); }
    result({ seen, size: ring.size, dropped: ring.dropped });`,
  );
  flash.close();
  assert.deepEqual(results, [
    { size: 27, inFlight: 3, unsent: 24, dropped: 10, next: 16 },
    { confirmed: 2, inFlight: 1 },
    { seen: Array.from({ length: 25 }, (_, i) => 15 + i), size: 0, dropped: 10 },
  ]);
});

test("after a power cut, batches that were in flight are committed and replayed, even one being confirmed", async () => {
  const flash = new FlashPartition({
    name: "p",
    file: join(dir, "flight-cut.bin"),
    byteLength: 4 * FLASH_SECTOR_BYTES,
  });
  let writes = 0;
  // Writes: sector header, three per push (6 pushes: writes 2..19), then one per confirmed record:
  // the 21st confirms batch 1 and never lands.
  const cutting: HostPort = {
    handle(op, args) {
      if (op === "write" && ++writes === 21) throw new Error("power cut");
      return flash.handle(op, args);
    },
  };
  const cut = await withRing(
    cutting,
    `const batch = ${BATCH};
    for (let n = 0; n < 6; n++) ring.push(batch(n), 5);
    for (let i = 0; i < 4; i++) ring.sent(1, JSON.parse(ring.peek()).n);
    result({ inFlight: ring.inFlight });
    ring.confirm(1, 1);`,
  );
  assert.deepEqual(cut, [{ inFlight: 4 }, { error: "power cut" }]);
  const after = await withRing(
    flash,
    `const sendAll = ${SEND_ALL};
    result({ size: ring.size, inFlight: ring.inFlight, unsent: ring.unsent });
    result({ replayed: sendAll(ring) });`,
  );
  flash.close();
  assert.deepEqual(after, [{ size: 5, inFlight: 0, unsent: 5 }, { replayed: [1, 2, 3, 4, 5] }]);
});
