// The benchmarks' services in their own processes, as they are deployed: the cloud API
// (cloud-server.ts) and the gateway (`npm start -w gateway`), on loopback.

import { type ChildProcess, spawn } from "node:child_process";
import { createServer } from "node:net";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";

export interface Service {
  child: ChildProcess;
  url: string;
}

/** The cloud API on a free port, over the given database; `nextLine` reads what it prints after `ready`. */
export async function startCloudProcess(
  uri: string,
  db: string,
  nodeFlags: string[] = [],
): Promise<Service & { nextLine(): Promise<string | undefined> }> {
  const profile = process.env.BENCH_CLOUD_PROF;
  const flags = [...nodeFlags, ...(profile ? ["--cpu-prof", `--cpu-prof-dir=${profile}`] : [])];
  const child = spawn(process.execPath, [...flags, "--import", "tsx", join(import.meta.dirname, "cloud-server.ts")], {
    env: { ...process.env, BENCH_MONGODB_URI: uri, BENCH_MONGODB_DB: db },
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

export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  await new Promise((resolve) => server.close(resolve));
  if (typeof address !== "object" || !address) throw new Error("no port");
  return address.port;
}

/** The gateway's own entry point with `env` on top of this process's; `url` is its HTTP (health, metrics) side. */
export async function startGatewayProcess(env: Record<string, string>): Promise<Service & { mqttPort: number }> {
  const [mqttPort, httpPort] = [await freePort(), await freePort()];
  const main = fileURLToPath(import.meta.resolve("@kestrel/gateway/main"));
  const child = spawn(process.execPath, ["--import", "tsx", main], {
    env: {
      ...process.env,
      MQTT_PORT: String(mqttPort),
      GATEWAY_HTTP_PORT: String(httpPort),
      GATEWAY_HTTP_HOST: "127.0.0.1",
      LOG_LEVEL: "error",
      ...env,
    },
    stdio: ["ignore", "ignore", "inherit"],
  });
  const url = `http://127.0.0.1:${httpPort}`;
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`the gateway exited with ${child.exitCode}`);
    const healthy = await fetch(`${url}/healthz`).then(
      (response) => response.ok,
      () => false,
    );
    if (healthy) return { child, url, mqttPort };
    if (Date.now() > deadline) throw new Error("the gateway did not become healthy in 30 s");
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** Stops a service with SIGTERM and waits for it to exit. */
export async function stopProcess(service: Service | undefined): Promise<void> {
  const child = service?.child;
  if (!child || child.exitCode !== null) return;
  const exited = new Promise((resolve) => child.once("exit", resolve));
  child.kill("SIGTERM");
  await exited;
}
