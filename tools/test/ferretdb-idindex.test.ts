// Our FerretDB program's Go tests (tools/ferretdb/*_test.go: the `_id` lookup index it adds), run
// from the tools suite so `make test` covers them.

import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { test } from "node:test";

test("the FerretDB program's Go tests pass", () => {
  const run = spawnSync("go", ["test", "./..."], {
    cwd: join(import.meta.dirname, "..", "ferretdb"),
    encoding: "utf8",
    timeout: 300_000,
  });
  assert.equal(run.status, 0, `go test failed:\n${run.stdout}\n${run.stderr}`);
});
