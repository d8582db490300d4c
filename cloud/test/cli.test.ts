import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtemp, readFile, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { after, before, test } from "node:test";

const CLOUD = join(import.meta.dirname, "..");

let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), "kestrel-cli-test-"));
});
after(() => rm(dir, { recursive: true, force: true }));

function run(script: string, args: string[], env: Record<string, string>): ChildProcess {
  return spawn(process.execPath, ["--import", "tsx", join(CLOUD, "src", script), ...args], {
    cwd: CLOUD,
    env: { ...process.env, MONGODB_URI: "", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
}

function exited(child: ChildProcess): Promise<number | null> {
  return new Promise((resolve) => child.once("exit", (code) => resolve(code)));
}

test("bootstrap CLI writes the credentials, readable by the owner only, using the embedded FerretDB", async () => {
  const out = join(dir, "credentials.json");
  const child = run("bootstrap-cli.ts", ["--devices", "2", "--out", out], { DATA_DIR: dir });
  let stdout = "";
  child.stdout?.on("data", (chunk) => {
    stdout += chunk;
  });
  assert.equal(await exited(child), 0);
  assert.match(stdout, /2 devices; credentials in/);
  assert.equal((await stat(out)).mode & 0o777, 0o600);
  const credentials = JSON.parse(await readFile(out, "utf8"));
  assert.deepEqual(
    credentials.devices.map((d: { deviceId: string }) => d.deviceId),
    ["sim-001", "sim-002"],
  );
  assert.equal(credentials.admin.email, "admin@kestrel.local");
  assert.match(credentials.gatewayKey, /^kgw_/);
});

test("bootstrap CLI refuses bad arguments with usage", async () => {
  const child = run("bootstrap-cli.ts", ["--devices", "many"], { DATA_DIR: dir });
  let stderr = "";
  child.stderr?.on("data", (chunk) => {
    stderr += chunk;
  });
  assert.equal(await exited(child), 2);
  assert.match(stderr, /--devices must be an integer/);
  assert.match(stderr, /usage:/);
});

test("the server starts on the embedded FerretDB, answers health, and stops cleanly on SIGTERM", async () => {
  const child = run("main.ts", [], { DATA_DIR: dir, PORT: "0", LOG_LEVEL: "info" });
  const url = await new Promise<string>((resolve, reject) => {
    createInterface({ input: child.stdout as NodeJS.ReadableStream }).on("line", (line) => {
      const match = /Server listening at (http:\/\/127\.0\.0\.1:\d+)/.exec(line);
      if (match?.[1]) resolve(match[1]);
    });
    child.once("exit", (code) => reject(new Error(`server exited with ${code}`)));
  });
  const health = await fetch(`${url}/api/health`);
  assert.equal(health.status, 200);
  child.kill("SIGTERM");
  assert.equal(await exited(child), 0);
});

test("the server refuses a bad configuration with exit code 2", async () => {
  const child = run("main.ts", [], { DATA_DIR: dir, PORT: "http" });
  let stderr = "";
  child.stderr?.on("data", (chunk) => {
    stderr += chunk;
  });
  assert.equal(await exited(child), 2);
  assert.match(stderr, /PORT must be an integer/);
});
