// Runs every workspace's test suite in turn (each prints its own coverage
// summary), then one closing line with the totals: `N passed, N failed`.

import { spawn } from "node:child_process";
import { createInterface } from "node:readline";

const WORKSPACES = ["wire", "firmware", "gateway", "cloud", "tools"];

interface Outcome {
  workspace: string;
  passed: number;
  failed: number;
  exitCode: number;
}

function runWorkspace(workspace: string): Promise<Outcome> {
  return new Promise((resolve) => {
    const outcome: Outcome = { workspace, passed: 0, failed: 0, exitCode: 0 };
    const child = spawn("npm", ["test", "--silent", "-w", workspace], { stdio: ["ignore", "pipe", "inherit"] });
    const lines = createInterface({ input: child.stdout });
    lines.on("line", (line) => {
      process.stdout.write(`${line}\n`);
      // node:test's closing summary (TAP "# pass N" or the spec reporter's "ℹ pass N", Node 24's
      // default); several runs in one workspace add up.
      const pass = /^(?:#|ℹ) pass (\d+)$/.exec(line);
      const fail = /^(?:#|ℹ) fail (\d+)$/.exec(line);
      if (pass) outcome.passed += Number(pass[1]);
      if (fail) outcome.failed += Number(fail[1]);
    });
    child.on("close", (code) => {
      outcome.exitCode = code ?? 1;
      resolve(outcome);
    });
  });
}

const outcomes: Outcome[] = [];
for (const workspace of WORKSPACES) {
  process.stdout.write(`\n=== ${workspace} ===\n`);
  outcomes.push(await runWorkspace(workspace));
}

process.stdout.write("\n=== summary ===\n");
let passed = 0;
let failed = 0;
for (const o of outcomes) {
  passed += o.passed;
  // A suite that crashed before reporting counts as one failure.
  const failures = o.failed > 0 ? o.failed : o.exitCode !== 0 ? 1 : 0;
  failed += failures;
  process.stdout.write(`${o.workspace.padEnd(10)} ${o.passed} passed, ${failures} failed (exit ${o.exitCode})\n`);
}
process.stdout.write(`${passed} passed, ${failed} failed\n`);
process.exit(failed > 0 || passed === 0 ? 1 : 0);
