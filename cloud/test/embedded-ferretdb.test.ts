import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { MongoClient } from "mongodb";
import { EmbeddedFerretDbError, startEmbeddedFerretDb } from "../src/storage/embedded-ferretdb.ts";

let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), "kestrel-ferretdb-test-"));
});
after(() => rm(dir, { recursive: true, force: true }));

test("starts on a free loopback port, keeps data across restarts, and stops", async () => {
  const dataDir = join(dir, "data");
  const first = await startEmbeddedFerretDb({ dataDir });
  assert.match(first.uri, /^mongodb:\/\/127\.0\.0\.1:\d+\/$/);
  const client = new MongoClient(first.uri);
  await client
    .db("t")
    .collection("c")
    .insertOne({ _id: "kept" as never });
  await client.close();
  await first.stop();
  await first.stop();

  const second = await startEmbeddedFerretDb({ dataDir });
  const again = new MongoClient(second.uri, { serverSelectionTimeoutMS: 5000 });
  assert.deepEqual(await again.db("t").collection("c").findOne({}), { _id: "kept" });
  await again.close();
  await second.stop();
  await assert.rejects(
    new MongoClient(second.uri, { serverSelectionTimeoutMS: 500 }).connect(),
    "nothing listens after stop",
  );
});

test("a missing binary is a clear error pointing at make setup", async () => {
  await assert.rejects(
    startEmbeddedFerretDb({ dataDir: join(dir, "x"), binary: join(dir, "no-such-ferretdb") }),
    (error: unknown) =>
      error instanceof EmbeddedFerretDbError && error.code === "ferretdb_missing" && /make setup/.test(error.message),
  );
});

test("a binary that never prints its URI fails within the start timeout, with its stderr", async () => {
  const fake = join(dir, "silent-ferretdb");
  await writeFile(fake, "#!/bin/sh\necho 'cannot open data dir' >&2\nexec sleep 30\n", { mode: 0o755 });
  await assert.rejects(
    startEmbeddedFerretDb({ dataDir: join(dir, "y"), binary: fake, startTimeoutMs: 300 }),
    (error: unknown) =>
      error instanceof EmbeddedFerretDbError &&
      error.code === "ferretdb_start_failed" &&
      /no MONGODB_URI within 300 ms/.test(error.message) &&
      /cannot open data dir/.test(error.message),
  );
});
