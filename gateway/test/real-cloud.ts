// The real cloud (FerretDB + the Fastify app) and the gateway as a child
// process, for the durability tests: the cloud's HTTP server can be stopped
// and restarted on the same port, the gateway killed with any signal.

import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { mkdtemp } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { bootstrap, buildApp, type Credentials, connectDb, loadConfig, startEmbeddedFerretDb } from "@kestrel/cloud";
import { pino } from "pino";

const silent = pino({ level: "silent" });

export const tempDir = (prefix: string) => mkdtemp(join(tmpdir(), `kestrel-${prefix}-`));

export async function freePort(): Promise<number> {
  const server = createServer();
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const address = server.address();
  server.close();
  await once(server, "close");
  if (typeof address !== "object" || !address) throw new Error("no port");
  return address.port;
}

export interface RawSample {
  boot: number;
  seq: number;
  ts: number;
}

export class RealCloud {
  private app: Awaited<ReturnType<typeof buildApp>> | undefined;
  private adminToken = "";

  private constructor(
    readonly port: number,
    readonly credentials: Credentials,
    private readonly build: () => ReturnType<typeof buildApp>,
    private readonly teardown: () => Promise<void>,
    private readonly progress: () => Promise<Array<{ gatewayId: string; pending: number; completeUntil: Date }>>,
  ) {}

  /** env: further cloud settings (e.g. OTA_TICK_MS), as the environment would give them. */
  static async start(deviceIds: string[], env: Record<string, string> = {}): Promise<RealCloud> {
    const dataDir = await tempDir("cloud");
    const ferret = await startEmbeddedFerretDb({ dataDir: join(dataDir, "ferretdb") });
    const port = await freePort();
    const config = loadConfig({
      ...env,
      MONGODB_URI: ferret.uri,
      PORT: String(port),
      HOST: "127.0.0.1",
      DATA_DIR: dataDir,
    });
    const store = await connectDb(ferret.uri, config.mongoDb);
    const credentials = await bootstrap(store.db, { tenantName: "Test", adminEmail: "admin@test.local", deviceIds });
    const cloud = new RealCloud(
      port,
      credentials,
      () => buildApp({ db: store.db, logger: silent, config }),
      async () => {
        await store.close();
        await ferret.stop();
      },
      () =>
        store.db
          .collection<{ gatewayId: string; pending: number; completeUntil: Date }>("gateway_uplink_progress")
          .find({}, { projection: { _id: 0, gatewayId: 1, pending: 1, completeUntil: 1 } })
          .toArray(),
    );
    await cloud.resume();
    return cloud;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /** Closes the HTTP server: the gateway finds the cloud unreachable. */
  async halt(): Promise<void> {
    await this.app?.close();
    this.app = undefined;
  }

  /** Serves again on the same port. */
  async resume(): Promise<void> {
    const app = await this.build();
    await app.listen({ port: this.port, host: "127.0.0.1" });
    this.app = app;
  }

  /** Raw samples of the device in [from, to); by default the last day. */
  async rawHistory(
    deviceId: string,
    window: { from: number; to: number } = { from: Date.now() - 86_400_000 + 60_000, to: Date.now() + 60_000 },
  ): Promise<RawSample[]> {
    if (!this.adminToken) {
      const login = await this.request("POST", "/api/auth/login", {
        email: this.credentials.admin.email,
        password: this.credentials.admin.password,
      });
      this.adminToken = (login as { token: string }).token;
    }
    const { from, to } = window;
    const path = `/api/devices/${encodeURIComponent(deviceId)}/telemetry?from=${from}&to=${to}&resolution=raw`;
    return ((await this.request("GET", path)) as { samples: RawSample[] }).samples;
  }

  /** What the gateways reported of their uplinks (gateway/uplink-progress.ts in the cloud). */
  uplinkProgress(): Promise<Array<{ gatewayId: string; pending: number; completeUntil: Date }>> {
    return this.progress();
  }

  async stop(): Promise<void> {
    await this.halt();
    await this.teardown();
  }

  private async request(method: string, path: string, json?: unknown): Promise<unknown> {
    const response = await fetch(`${this.url}${path}`, {
      method,
      headers: {
        ...(json === undefined ? {} : { "content-type": "application/json" }),
        ...(this.adminToken ? { authorization: `Bearer ${this.adminToken}` } : {}),
      },
      body: json === undefined ? undefined : JSON.stringify(json),
    });
    const text = await response.text();
    if (!response.ok) throw new Error(`${method} ${path} answered ${response.status}: ${text}`);
    return JSON.parse(text);
  }
}

/** The gateway as `npm start` runs it (src/main.ts through tsx), in its own process. */
export class GatewayProcess {
  private child: ChildProcess | undefined;

  constructor(private readonly env: Record<string, string>) {}

  async start(): Promise<void> {
    const child = spawn(process.execPath, ["--import", "tsx", "src/main.ts"], {
      cwd: new URL("..", import.meta.url),
      env: { ...process.env, LOG_LEVEL: "info", ...this.env },
      stdio: ["ignore", "pipe", "inherit"],
    });
    this.child = child;
    let output = "";
    await new Promise<void>((resolve, reject) => {
      const onData = (chunk: Buffer) => {
        output += chunk.toString();
        if (output.includes('"msg":"gateway listening"')) {
          child.stdout?.off("data", onData);
          child.stdout?.resume();
          resolve();
        }
      };
      child.stdout?.on("data", onData);
      child.once("exit", (code) => reject(new Error(`gateway exited with ${code} before listening:\n${output}`)));
    });
  }

  async kill(signal: NodeJS.Signals): Promise<number | null> {
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return child?.exitCode ?? null;
    const exited = once(child, "exit");
    child.kill(signal);
    const [code] = (await exited) as [number | null];
    this.child = undefined;
    return code;
  }
}
