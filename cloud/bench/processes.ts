// The cloud API (cloud-server.ts) in its own process, on loopback, as it is deployed; the gateway's
// counterpart is gateway/bench/harness.ts.

import { type ChildProcess, spawn } from "node:child_process";
import { join } from "node:path";
import { createInterface } from "node:readline";

export interface Service {
  child: ChildProcess;
  url: string;
}

/** The cloud API on a free port, over the given database; `nextLine` reads what it prints after `ready`. */
export async function startCloudProcess(
  uri: string,
  db: string,
  nodeFlags: string[] = [],
  config: Record<string, string> = {},
): Promise<Service & { nextLine(): Promise<string | undefined> }> {
  const profile = process.env.BENCH_CLOUD_PROF;
  const flags = [...nodeFlags, ...(profile ? ["--cpu-prof", `--cpu-prof-dir=${profile}`] : [])];
  const child = spawn(process.execPath, [...flags, "--import", "tsx", join(import.meta.dirname, "cloud-server.ts")], {
    env: { ...process.env, BENCH_MONGODB_URI: uri, BENCH_MONGODB_DB: db, BENCH_CLOUD_ENV: JSON.stringify(config) },
    stdio: ["ignore", "pipe", "inherit"],
  });
  const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream })[Symbol.asyncIterator]();
  const nextLine = async () => {
    const { value, done } = await lines.next();
    return done ? undefined : (value as string);
  };
  for (let line = await nextLine(); line !== undefined; line = await nextLine()) {
    const port = /^ready (\d+)$/.exec(line)?.[1];
    if (port) return { child, url: `http://127.0.0.1:${port}`, nextLine };
  }
  throw new Error("the cloud server exited before it was ready");
}
