// Debian's mosquitto as a child process on a free loopback port, for the bridge tests and the
// benchmarks that compare against it.

import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, writeFileSync } from "node:fs";
import { Socket } from "node:net";
import { join } from "node:path";
import { freePort } from "./real-cloud.ts";

// Debian puts the broker in /usr/sbin, which is not on every user's PATH.
const MOSQUITTO = existsSync("/usr/sbin/mosquitto") ? "/usr/sbin/mosquitto" : "mosquitto";

export interface Mosquitto {
  port: number;
  child: ChildProcess;
  stop(): Promise<void>;
}

/** Resolves once something accepts connections on the port; rejects if the child exits first. */
export async function waitForPort(port: number, child: ChildProcess): Promise<void> {
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`process exited with ${child.exitCode}`);
    const open = await new Promise<boolean>((resolve) => {
      const socket = new Socket();
      socket.once("connect", () => {
        socket.destroy();
        resolve(true);
      });
      socket.once("error", () => resolve(false));
      socket.connect(port, "127.0.0.1");
    });
    if (open) return;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`port ${port} did not open`);
}

/** Ends a child process with SIGTERM and waits for it. */
export async function stopProcess(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once("exit", resolve));
  child.kill("SIGTERM");
  await exited;
}

/** Anonymous, no persistence to disk; sessions of clean: false clients live as long as the process. */
export async function startMosquitto(dir: string): Promise<Mosquitto> {
  const port = await freePort();
  const config = join(dir, "mosquitto.conf");
  writeFileSync(config, `listener ${port} 127.0.0.1\nallow_anonymous true\nmax_connections -1\n`);
  const child = spawn(MOSQUITTO, ["-c", config], { stdio: "ignore" });
  await waitForPort(port, child);
  return { port, child, stop: () => stopProcess(child) };
}
