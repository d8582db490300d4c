// Shared by the end-to-end tests: a silent logger, polling, a real cloud with the real gateway in
// front of it, and a small client for the cloud API as the dashboard uses it.

import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type Gateway, loadGatewayConfig, startGateway } from "@kestrel/gateway";
import { pino } from "pino";
import { RealCloud } from "../../gateway/test/real-cloud.ts";

export const silent = pino({ level: process.env.TEST_LOG_LEVEL || "silent" });

export function tempDir(prefix: string): Promise<string> {
  return mkdtemp(join(tmpdir(), `kestrel-${prefix}-`));
}

export async function until<T>(probe: () => Promise<T | undefined>, what: string, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** The real cloud (FerretDB underneath) for these devices, and the real gateway in front of it, on loopback. */
export async function cloudBehindGateway(
  name: string,
  deviceIds: string[],
  env: { cloud?: Record<string, string>; gateway?: Record<string, string> } = {},
): Promise<{ cloud: RealCloud; gateway: Gateway; dataDir: string; stop(): Promise<void> }> {
  const dataDir = await tempDir(name);
  const cloud = await RealCloud.start(deviceIds, env.cloud);
  const gateway = await startGateway(
    loadGatewayConfig({
      MQTT_PORT: "0",
      GATEWAY_HTTP_PORT: "0",
      CLOUD_URL: cloud.url,
      GATEWAY_KEY: cloud.credentials.gatewayKey,
      GATEWAY_DATA_DIR: join(dataDir, "gateway"),
      ...env.gateway,
    }),
    silent,
  );
  return {
    cloud,
    gateway,
    dataDir,
    stop: async () => {
      await gateway.stop();
      await cloud.stop();
    },
  };
}

export interface RawSample {
  boot: number;
  seq: number;
  ts: number;
  m: Record<string, number>;
}

export class CloudApi {
  private token = "";

  constructor(readonly baseUrl: string) {}

  async login(email: string, password: string): Promise<void> {
    const body = await this.request("POST", "/api/auth/login", { email, password });
    this.token = (body as { token: string }).token;
  }

  async rawHistory(deviceId: string, from: number, to: number): Promise<RawSample[]> {
    const query = `from=${from}&to=${to}&resolution=raw`;
    const body = await this.request("GET", `/api/devices/${encodeURIComponent(deviceId)}/telemetry?${query}`);
    return (body as { samples: RawSample[] }).samples;
  }

  async request(method: string, path: string, json?: unknown): Promise<unknown> {
    const response = await fetch(`${this.baseUrl}${path}`, {
      method,
      headers: {
        ...(json === undefined ? {} : { "content-type": "application/json" }),
        ...(this.token ? { authorization: `Bearer ${this.token}` } : {}),
      },
      body: json === undefined ? undefined : JSON.stringify(json),
    });
    const text = await response.text();
    if (!response.ok) throw new Error(`${method} ${path} answered ${response.status}: ${text}`);
    return JSON.parse(text);
  }
}
