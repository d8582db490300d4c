// `make run`'s shutdown with the database stopped (SIGSTOP), under load: Ctrl-C ends the whole
// platform, FerretDB included, within 10 s; started again on the same data, it resumes, and every
// sample the gateway acknowledged before, during or after is stored exactly once.

import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { after, test } from "node:test";
import { freePort } from "../../gateway/test/real-cloud.ts";
import { printReport } from "../src/fleet/cli.ts";
import { FleetRun } from "../src/fleet/fleet.ts";
import { tempDir } from "./helpers.ts";

const STOP_WITHIN_MS = 10_000;
const RUN = join(import.meta.dirname, "..", "src", "run.ts");

/** The pids of this process's children named `name` (from /proc). */
function childrenNamed(parent: number, name: string): number[] {
  const found: number[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      // pid (comm) state ppid ...: comm may hold spaces, so parse from its closing parenthesis.
      const comm = stat.slice(stat.indexOf("(") + 1, stat.lastIndexOf(")"));
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      if (ppid === parent && comm === name) found.push(Number(entry));
    } catch {
      // gone meanwhile
    }
  }
  return found;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

interface Running {
  child: ChildProcess;
  ferretdb: number;
  output: string[];
}

const started: ChildProcess[] = [];
after(() => {
  for (const child of started) if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
});

/** `make run`'s program, as a user starts it, until it says it is running. */
async function startRun(env: Record<string, string>): Promise<Running> {
  const child = spawn(process.execPath, ["--import", "tsx", RUN], {
    env: { ...process.env, ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  started.push(child);
  const output: string[] = [];
  createInterface({ input: child.stderr as NodeJS.ReadableStream }).on("line", (line) => output.push(line));
  const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream });
  const running = new Promise<void>((resolve, reject) => {
    lines.on("line", (line) => {
      output.push(line);
      if (line.includes("Kestrel is running.")) resolve();
    });
    child.once("exit", (code) => reject(new Error(`make run exited (${code}) before running:\n${output.join("\n")}`)));
  });
  await running;
  const [ferretdb] = childrenNamed(child.pid as number, "ferretdb");
  assert.ok(ferretdb, "make run started FerretDB");
  return { child, ferretdb, output };
}

test("Ctrl-C stops make run within 10 s with FerretDB stopped, and a restart resumes with nothing lost", async () => {
  const dataDir = await tempDir("shutdown");
  const [cloudPort, mqttPort, gatewayPort] = [await freePort(), await freePort(), await freePort()];
  const env = {
    DATA_DIR: dataDir,
    DEVICES: "1",
    PORT: String(cloudPort),
    MQTT_TLS_PORT: String(mqttPort),
    GATEWAY_HTTP_PORT: String(gatewayPort),
    LOG_LEVEL: "error",
  };
  const first = await startRun(env);
  const credentials = JSON.parse(readFileSync(join(dataDir, "credentials.json"), "utf8"));
  const run = await FleetRun.prepare({
    cloudUrl: `http://127.0.0.1:${cloudPort}`,
    mqttUrl: `mqtts://127.0.0.1:${mqttPort}`,
    ca: readFileSync(join(dataDir, "pki", "ca.pem"), "utf8"),
    admin: credentials.admin,
    devices: 30,
    samplesPerBatch: 5,
    intervalMs: 1_000,
    durationMs: 45_000,
    idPrefix: "restart",
    connectPerSecond: 100,
    settleTimeoutMs: 120_000,
    log: () => undefined,
  });
  try {
    const publishing = run.publish();
    await new Promise((resolve) => setTimeout(resolve, 8_000));

    process.kill(first.ferretdb, "SIGSTOP");
    await new Promise((resolve) => setTimeout(resolve, 2_000));
    const ackedBeforeStop = run.batchesAcked;
    const stopping = performance.now();
    const exited = once(first.child, "exit");
    first.child.kill("SIGINT");
    await Promise.race([exited, new Promise((resolve) => setTimeout(resolve, STOP_WITHIN_MS + 5_000))]);
    const stopMs = performance.now() - stopping;
    process.stderr.write(`make run stopped in ${stopMs.toFixed(0)} ms with FerretDB stopped\n`);
    assert.ok(first.child.exitCode !== null || first.child.signalCode !== null, "make run exited");
    assert.ok(stopMs < STOP_WITHIN_MS, `stopped in ${stopMs.toFixed(0)} ms`);
    assert.equal(alive(first.ferretdb), false, "FerretDB did not outlive make run");

    // Started again on the same data and ports: the devices reconnect by themselves.
    const second = await startRun(env);
    await publishing;
    const report = await run.finish();
    printReport(report, (line) => process.stderr.write(`fleet: ${line}\n`));
    assert.ok(run.batchesAcked > ackedBeforeStop, "acknowledged after the restart too");
    assert.equal(report.missing, 0, "acknowledged samples missing");
    assert.equal(report.duplicated, 0, "samples stored twice");
    assert.equal(report.counterMismatches, 0, "devices whose stored counter disagrees with their history");

    const exitedAgain = once(second.child, "exit");
    second.child.kill("SIGTERM");
    await exitedAgain;
    assert.equal(alive(second.ferretdb), false);
  } finally {
    await run.close();
  }
});
