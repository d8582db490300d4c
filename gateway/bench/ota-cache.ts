// OTA through the gateway's artifact cache: devices download a 1.5 MB firmware image in 4 KB chunks
// over MQTT, as the firmware does (windows of four chunks, the next window asked for when one is in,
// asking again after `busy`/`unavailable`). Each configuration gets its own gateway and makes two
// passes: with a cold cache (a new image, which the gateway fetches from the real cloud during the
// pass), then with the image cached. Baseline in the same run: one device alone, both passes.
//
//   npm run bench:ota -w gateway        (DEVICES=20 IMAGE_BYTES=1572864 by default)
//
// Prints, per run, the wall time to the last device's last byte, the bytes the gateway fetched from
// the cloud (its kestrel_gateway_artifact_upstream_bytes_total) against the image size, the bytes it
// served, the gateway's and the load generator's CPU use (the generator, which also hosts the cloud,
// must not be the limit), and the load average.

import { readFileSync } from "node:fs";
import { loadavg } from "node:os";
import { artifactTopics, ChunkStatus, readChunkHeader } from "@kestrel/wire/artifacts";
import { connectAsync, type MqttClient } from "mqtt";
import { firmwareImage, OtaOperator, type UploadedArtifact } from "../test/ota-fixture.ts";
import { freePort, RealCloud, tempDir } from "../test/real-cloud.ts";
import { startGatewayProcess } from "./harness.ts";

const DEVICES = Number(process.env.DEVICES ?? 20);
const IMAGE_BYTES = Number(process.env.IMAGE_BYTES ?? 1.5 * 1024 * 1024);
const WINDOW = 16 * 1024;

interface RunResult {
  name: string;
  devices: number;
  wallMs: number;
  upstreamBytes: number;
  servedBytes: number;
  refusals: number;
  generatorCpu: number;
  gatewayCpu: number;
}

/** CPU seconds a process has used (utime + stime from /proc; Linux clock ticks are 1/100 s). */
function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]?.split(" ") ?? [];
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

/** One device's download, chunk by chunk, as kestrel/artifact-update does it. */
class Downloader {
  #waiting: ((message: Buffer) => void) | undefined;
  refusals = 0;

  constructor(
    readonly deviceId: string,
    readonly client: MqttClient,
  ) {
    client.on("message", (_topic, payload) => this.#waiting?.(payload));
  }

  async download(artifact: UploadedArtifact): Promise<void> {
    let offset = 0;
    while (offset < artifact.size) {
      const length = Math.min(WINDOW, artifact.size - offset);
      const arrived = await this.#window(artifact.sha256, offset, length);
      if (typeof arrived === "number") {
        this.refusals++;
        await new Promise((resolve) => setTimeout(resolve, arrived));
        continue;
      }
      offset += arrived.length;
    }
  }

  /** The window's bytes, or how long to wait before asking again. */
  #window(sha256: string, offset: number, length: number): Promise<Buffer | number> {
    const parts: Buffer[] = [];
    let received = 0;
    return new Promise((resolve) => {
      this.#waiting = (message) => {
        const header = readChunkHeader(message);
        if (!header || header.offset !== offset + received) return;
        if (header.status === ChunkStatus.busy || header.status === ChunkStatus.unavailable) {
          this.#waiting = undefined;
          resolve(header.retryAfterMs);
          return;
        }
        if (header.status !== ChunkStatus.ok) throw new Error(`chunk status ${header.status} at ${offset}`);
        parts.push(message.subarray(20));
        received += message.length - 20;
        if (received >= length) {
          this.#waiting = undefined;
          resolve(Buffer.concat(parts));
        }
      };
      this.client.publish(artifactTopics.get(this.deviceId), JSON.stringify({ v: 1, sha256, offset, length }));
    });
  }
}

async function metric(httpPort: number, name: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${httpPort}/metrics`)).text();
  const line = text.split("\n").find((l) => l.startsWith(`${name} `) || l.startsWith(`${name}{`));
  return line ? Number(line.split(" ").at(-1)) : 0;
}

/** One pass of every downloader over the artifact, measured: wall time, gateway counters, CPU. */
async function pass(
  name: string,
  gateway: { child: { pid?: number }; httpPort: number },
  downloaders: Downloader[],
  artifact: UploadedArtifact,
): Promise<RunResult> {
  const counters = async () => ({
    upstream: await metric(gateway.httpPort, "kestrel_gateway_artifact_upstream_bytes_total"),
    served: await metric(gateway.httpPort, "kestrel_gateway_artifact_bytes_served_total"),
  });
  const before = await counters();
  const refusalsBefore = downloaders.reduce((sum, downloader) => sum + downloader.refusals, 0);
  const cpu = process.cpuUsage();
  const gatewayCpu = cpuSeconds(gateway.child.pid as number);
  const started = performance.now();
  await Promise.all(downloaders.map((downloader) => downloader.download(artifact)));
  const wallMs = performance.now() - started;
  const used = process.cpuUsage(cpu);
  const gatewayUsed = cpuSeconds(gateway.child.pid as number) - gatewayCpu;
  const after = await counters();
  return {
    name,
    devices: downloaders.length,
    wallMs,
    upstreamBytes: after.upstream - before.upstream,
    servedBytes: after.served - before.served,
    refusals: downloaders.reduce((sum, downloader) => sum + downloader.refusals, 0) - refusalsBefore,
    generatorCpu: (used.user + used.system) / 1000 / wallMs,
    gatewayCpu: (gatewayUsed * 1000) / wallMs,
  };
}

/**
 * A gateway of its own with this download limit and these devices: a pass with a cold cache (a new
 * image: the gateway fetches it from the cloud meanwhile), then a pass with the image cached.
 */
async function run(
  name: string,
  cloud: RealCloud,
  operator: OtaOperator,
  devices: number,
  maxDownloads: number,
  seed: number,
): Promise<[RunResult, RunResult]> {
  const httpPort = await freePort();
  const gateway = await startGatewayProcess({
    CLOUD_URL: cloud.url,
    GATEWAY_KEY: cloud.credentials.gatewayKey,
    GATEWAY_DATA_DIR: await tempDir("bench-ota-gateway"),
    GATEWAY_HTTP_PORT: String(httpPort),
    ARTIFACT_MAX_DOWNLOADS: String(maxDownloads),
  });
  const downloaders: Downloader[] = [];
  try {
    for (const { deviceId, token } of cloud.credentials.devices.slice(0, devices)) {
      const client = await connectAsync(`mqtt://127.0.0.1:${gateway.port}`, {
        clientId: deviceId,
        username: deviceId,
        password: token,
        reconnectPeriod: 0,
      });
      await client.subscribeAsync(artifactTopics.chunk(deviceId), { qos: 0 });
      downloaders.push(new Downloader(deviceId, client));
    }
    const artifact = await operator.upload(firmwareImage({ version: `1.0.${seed}`, size: IMAGE_BYTES, seed }));
    const measured = { child: gateway.child, httpPort };
    const cold = await pass(`${name}, cold cache`, measured, downloaders, artifact);
    const warm = await pass(`${name}, cached`, measured, downloaders, artifact);
    return [cold, warm];
  } finally {
    for (const downloader of downloaders) await downloader.client.endAsync(true);
    gateway.child.kill("SIGTERM");
  }
}

const mib = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(2)} MiB`;

async function main(): Promise<void> {
  const before = loadavg();
  const ids = Array.from({ length: DEVICES }, (_, i) => `ota-bench-${i}`);
  const cloud = await RealCloud.start(ids);
  const operator = await OtaOperator.signIn(cloud.url, cloud.credentials.admin);
  try {
    const [single, singleWarm] = await run("1 device (baseline)", cloud, operator, 1, 8, 1);
    const fleet = await run(`${DEVICES} devices, ARTIFACT_MAX_DOWNLOADS=8`, cloud, operator, DEVICES, 8, 2);
    const open = await run(
      `${DEVICES} devices, ARTIFACT_MAX_DOWNLOADS=${DEVICES}`,
      cloud,
      operator,
      DEVICES,
      DEVICES,
      3,
    );
    const table = [
      `\nOTA through the gateway cache: ${mib(IMAGE_BYTES)} image, 4 KB chunks over MQTT; "vs 1 device": against the baseline's pass of the same kind`,
      "| run | wall time | vs 1 device | fetched from the cloud | / image | served to devices | busy/unavailable answers | gateway CPU | generator CPU |",
      "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
      ...[single, singleWarm, ...fleet, ...open].map(
        (result) =>
          `| ${result.name} | ${(result.wallMs / 1000).toFixed(2)} s | ${(result.wallMs / (result.name.endsWith("cached") ? singleWarm : single).wallMs).toFixed(2)}x | ` +
          `${mib(result.upstreamBytes)} | ${(result.upstreamBytes / IMAGE_BYTES).toFixed(3)} | ${mib(result.servedBytes)} | ` +
          `${result.refusals} | ${Math.round(result.gatewayCpu * 100)}% | ${Math.round(result.generatorCpu * 100)}% of a core |`,
      ),
      `\nload average before: ${before.map((l) => l.toFixed(2)).join(" ")}, after: ${loadavg()
        .map((l) => l.toFixed(2))
        .join(" ")}`,
    ];
    process.stdout.write(`${table.join("\n")}\n`);
  } finally {
    await cloud.stop();
  }
}

await main();
