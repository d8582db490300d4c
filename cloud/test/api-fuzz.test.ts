// A schema-driven fuzz run of the whole API with schemathesis (from PyPI, pinned with hashes in
// test/fuzz/requirements.txt, installed into .local/venv by setup): the real cloud on FerretDB, every
// check, the stateless phases (examples, coverage, fuzzing) and the stateful one (following the
// document's links), a fixed seed and a bounded number of examples per operation. Any 5xx, any
// answer that breaks its schema, and any schema-valid request refused fail it.

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { access, mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { REPO_ROOT } from "../src/config.ts";
import type { Credentials } from "../src/tenants/bootstrap.ts";
import { bootstrapTenant, PASSWORD, startTestCloud, type TestCloud } from "./helpers.ts";

const SCHEMATHESIS = join(REPO_ROOT, ".local", "venv", "bin", "schemathesis");
const FUZZ_DIR = join(REPO_ROOT, "cloud", "test", "fuzz");
/** The whole run's output, kept for reading after a failure (git-ignored). */
const LOG = join(REPO_ROOT, "test-artifacts", "api-fuzz.log");

interface Outcome {
  code: number | null;
  output: string;
}

function schemathesis(args: string[], cwd: string, env: Record<string, string>): Promise<Outcome> {
  return new Promise((resolve, reject) => {
    const child = spawn(SCHEMATHESIS, args, {
      cwd,
      env: { ...process.env, ...env, PYTHONPATH: FUZZ_DIR, NO_COLOR: "1", SCHEMATHESIS_HOOKS: "" },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let output = "";
    child.stdout.on("data", (chunk: Buffer) => {
      output += chunk.toString("utf8");
    });
    child.stderr.on("data", (chunk: Buffer) => {
      output += chunk.toString("utf8");
    });
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, output }));
  });
}

describe("schema-driven fuzz run of the whole API", () => {
  let cloud: TestCloud;
  let acme: Credentials;
  let url = "";
  let reports = "";

  before(async () => {
    await access(SCHEMATHESIS).catch(() => {
      throw new Error(`${SCHEMATHESIS} is missing: run make setup`);
    });
    reports = await mkdtemp(join(tmpdir(), "kestrel-fuzz-"));
    cloud = await startTestCloud({
      EXPORT_SCHEDULER: "off",
      // The fuzzer is one client sending thousands of requests: the limits are tested elsewhere.
      RATE_LIMIT_PER_MINUTE: "1000000",
      RATE_LIMIT_ANONYMOUS_PER_MINUTE: "1000000",
      RATE_LIMIT_GATEWAY_PER_MINUTE: "1000000",
    });
    acme = await bootstrapTenant(cloud.db, "Acme", ["sim-001", "sim-002", "sim-003"]);
    await cloud.app.listen({ port: 0, host: "127.0.0.1" });
    const address = cloud.app.server.address();
    url = `http://127.0.0.1:${typeof address === "object" && address ? address.port : 0}`;
  });
  after(async () => {
    await cloud?.close();
    if (reports) await rm(reports, { recursive: true, force: true });
  });

  test("stateless and stateful phases: no 5xx, no schema violation, no valid request refused", async (t) => {
    const { code, output } = await schemathesis(
      [
        "--config-file",
        join(FUZZ_DIR, "schemathesis.toml"),
        "run",
        `${url}/docs/json`,
        "--phases",
        "examples,coverage,fuzzing,stateful",
        "--report",
        "junit",
        "--report-junit-path",
        join(reports, "junit.xml"),
      ],
      reports,
      {
        KESTREL_FUZZ_URL: url,
        KESTREL_FUZZ_EMAIL: acme.admin.email,
        KESTREL_FUZZ_PASSWORD: PASSWORD,
        KESTREL_FUZZ_GATEWAY_KEY: acme.gatewayKey,
      },
    );
    await mkdir(join(REPO_ROOT, "test-artifacts"), { recursive: true });
    await writeFile(LOG, output);
    const summary = output.slice(output.lastIndexOf("SUMMARY"));
    for (const line of summary.split("\n")) if (line.trim() !== "") t.diagnostic(line);
    const failures = output.slice(output.indexOf("FAILURES"), output.lastIndexOf("WARNINGS"));
    const junit = await readFile(join(reports, "junit.xml"), "utf8");
    const tested = Number(/tests="(\d+)"/.exec(junit)?.[1] ?? 0);
    assert.ok(tested >= 40, `the run covered ${tested} operations`);
    assert.equal(code, 0, `${failures.slice(0, 30_000)}\n(whole output: ${LOG})`);
    assert.doesNotMatch(summary, /failures?,|❌/u);
  });
});
