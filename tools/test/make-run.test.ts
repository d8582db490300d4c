// What `make run` shows and does:
// the banner names the credentials file in DATA_DIR and the gateway's HTTP port, GATEWAY_DATA_DIR is
// where the gateway keeps its queues, no log line lands on the terminal (a failed login included),
// and Ctrl-C stops everything with exit code 0. Also: setup rebuilds only what changed.

import assert from "node:assert/strict";
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { access, readFile } from "node:fs/promises";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { tempDir, until } from "./helpers.ts";

const ROOT = join(import.meta.dirname, "..", "..");

describe("make run", () => {
  let child: ChildProcess | undefined;
  after(() => {
    if (child?.pid && child.exitCode === null && child.signalCode === null) process.kill(-child.pid, "SIGKILL");
  });

  test("banner, data directories, no log lines on the terminal, a clean Ctrl-C", async () => {
    const dataDir = await tempDir("make-run");
    const gatewayDataDir = await tempDir("make-run-gateway");
    // In its own process group, which Ctrl-C at a terminal signals as a whole.
    child = spawn("make", ["--no-print-directory", "run"], {
      cwd: ROOT,
      detached: true,
      env: {
        ...process.env,
        DATA_DIR: dataDir,
        GATEWAY_DATA_DIR: gatewayDataDir,
        DEVICES: "1",
        PORT: "0",
        MQTT_TLS_PORT: "0",
        GATEWAY_HTTP_PORT: "0",
        LOG_LEVEL: "info",
      },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout?.on("data", (chunk: Buffer) => {
      stdout += chunk.toString("utf8");
    });
    child.stderr?.on("data", (chunk: Buffer) => {
      stderr += chunk.toString("utf8");
    });
    const exited = new Promise<string>((resolve) =>
      child?.on("exit", (code, signal) => resolve(signal ?? `exit ${code}`)),
    );
    await until(async () => (stdout.includes("Ctrl-C stops everything") ? true : undefined), "the banner", 120_000);

    assert.match(stdout, new RegExp(`credentials saved in ${join(dataDir, "credentials.json")}`));
    await access(join(dataDir, "credentials.json"));
    const gatewayLine = /gateway {4}(http:\/\/127\.0\.0\.1:(\d+))\/healthz/.exec(stdout);
    assert.ok(gatewayLine?.[1], stdout);
    const health = await fetch(`${gatewayLine[1]}/healthz`);
    assert.equal(health.status, 200);
    await access(join(gatewayDataDir, "uplink"));
    await access(join(gatewayDataDir, "acks"));

    const cloudUrl = /dashboard {2}(http:\/\/127\.0\.0\.1:\d+)\//.exec(stdout)?.[1];
    assert.ok(cloudUrl);
    const failed = await fetch(`${cloudUrl}/api/auth/login`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ email: "admin@kestrel.local", password: "not the password" }),
    });
    assert.equal(failed.status, 401);
    await new Promise((resolve) => setTimeout(resolve, 500));
    for (const line of `${stdout}\n${stderr}`.split("\n")) assert.doesNotMatch(line, /^\s*\{/, "no JSON log line");
    const logPath = join(dataDir, "logs", "kestrel.log");
    assert.match(stdout, new RegExp(`logs {7}${logPath}`));

    process.kill(-(child.pid ?? 0), "SIGINT");
    // make passes the interrupt on to its caller as it should (killed by SIGINT), but says nothing.
    assert.ok(["exit 0", "SIGINT"].includes(await exited), stderr);
    assert.match(stdout, /stopping \(at most 10 s; Ctrl-C again to quit now\)\.\.\.\nstopped\n$/);
    assert.doesNotMatch(stderr, /make: \*\*\*/, "make reports no interrupt");
    assert.match(await readFile(logPath, "utf8"), /login failed/);
  });

  test("setup rebuilds the firmware and the dashboard only when their sources changed", () => {
    const setup = () =>
      spawnSync("bash", ["tools/scripts/setup.sh"], { cwd: ROOT, encoding: "utf8", env: process.env });
    const first = setup();
    assert.equal(first.status, 0, first.stderr);
    const second = setup();
    assert.equal(second.status, 0, second.stderr);
    assert.match(second.stdout, /firmware and dashboard builds are up to date/);
    assert.doesNotMatch(second.stdout, /building the firmware/);
  });
});
