// Composes the gateway: the device-facing MQTT broker (embedded aedes with device
// authentication and topic ACLs, or a bridge to an external one), the durable uplink
// to the cloud, the command relay, the artifact cache and relay (signed updates), and a
// small HTTP server for health and Prometheus metrics. With GATEWAY_WORKERS > 1 several processes each run the part below the
// HTTP server (GatewayCore) on shared ports, and one serves HTTP for all (cluster.ts).

import { readdir } from "node:fs/promises";
import { join } from "node:path";
import type { Logger } from "pino";
import { ArtifactCache } from "./artifacts/artifact-cache.ts";
import { ArtifactChannel } from "./artifacts/artifact-channel.ts";
import { ArtifactRelay } from "./artifacts/artifact-relay.ts";
import { ChunkServer } from "./artifacts/chunk-server.ts";
import { startBridge } from "./bridge/external-broker.ts";
import { DeviceAuthenticator } from "./broker/device-auth.ts";
import {
  type DeviceBroker,
  type DeviceClaims,
  type EmbeddedBroker,
  startEmbeddedBroker,
} from "./broker/embedded-broker.ts";
import type { GatewayConfig } from "./config.ts";
import { CommandChannel } from "./downlink/command-channel.ts";
import { CommandRelay } from "./downlink/command-relay.ts";
import { type GatewayHealth, serveHealth } from "./health-server.ts";
import { DeviceMessageIntake } from "./intake.ts";
import { GatewayMetrics } from "./metrics.ts";
import { close } from "./servers.ts";
import { CloudClient } from "./uplink/cloud-client.ts";
import { DiskQueue } from "./uplink/disk-queue.ts";
import { UplinkForwarder } from "./uplink/forwarder.ts";
import { gatewayIdOf, UplinkReporter } from "./uplink/uplink-report.ts";

export interface Gateway {
  /** Undefined when the plain TCP listener is off. */
  readonly mqttPort: number | undefined;
  /** Undefined when no TLS listener is configured. */
  readonly mqttTlsPort: number | undefined;
  readonly httpPort: number;
  readonly metrics: GatewayMetrics;
  readonly forwarder: UplinkForwarder;
  readonly artifactCache: ArtifactCache;
  /** `deliverMs`: how long the uplink may still try to deliver what is queued (it stays on disk). */
  stop(deliverMs?: number): Promise<void>;
}

/** A device waits for its CONNACK while the cloud is asked: the question gets this long at most. */
const AUTH_ASK_TIMEOUT_MS = 3_000;

/** One process's gateway: everything but the HTTP server. */
export interface GatewayCore {
  readonly mqttPort: number | undefined;
  readonly mqttTlsPort: number | undefined;
  readonly metrics: GatewayMetrics;
  readonly forwarder: UplinkForwarder;
  readonly artifactCache: ArtifactCache;
  health(): Promise<GatewayHealth>;
  /** The metrics in the Prometheus text format, gauges read now. */
  renderMetrics(): Promise<string>;
  /** Closes the device's connection here, if it has one (a worker's share of a takeover). */
  disconnectDevice(deviceId: string): Promise<void>;
  /** `deliverMs`: how long the uplink may still try to deliver what is queued (it stays on disk). */
  stop(deliverMs?: number): Promise<void>;
}

/** This process's place in a gateway of GATEWAY_WORKERS processes. */
export interface WorkerRole {
  index: number;
  /** Asks the other workers to drop a device's connection before this one accepts it. */
  claims: DeviceClaims;
}

/** Acks are small and few: this holds hundreds of thousands while the cloud is away. */
const ACK_QUEUE_MAX_BYTES = 64 * 1024 * 1024;

/**
 * Where a worker keeps its queues: worker 0 in the data directory itself (where a gateway of one
 * process always kept them), worker k in `worker-<k>` below it.
 */
function workerDir(dataDir: string, index: number): string {
  return index === 0 ? dataDir : join(dataDir, `worker-${index}`);
}

/**
 * Queues left by workers that no longer run (GATEWAY_WORKERS was lowered): each is drained by the
 * worker whose index it has modulo the new count, so nothing acknowledged waits for a restart.
 */
async function orphanedQueueDirs(dataDir: string, index: number, workers: number): Promise<string[]> {
  const entries = await readdir(dataDir).catch(() => [] as string[]);
  return entries
    .map((name) => /^worker-(\d+)$/.exec(name)?.[1])
    .map(Number)
    .filter((k) => Number.isSafeInteger(k) && k >= workers && k % workers === index)
    .map((k) => workerDir(dataDir, k));
}

async function openQueues(dir: string, config: GatewayConfig, logger: Logger) {
  const uplink = await DiskQueue.open({ dir: join(dir, "uplink"), maxBytes: config.queueMaxBytes });
  logger.info({ dir, ...uplink.report }, "uplink queue opened");
  const acks = await DiskQueue.open({ dir: join(dir, "acks"), maxBytes: ACK_QUEUE_MAX_BYTES });
  logger.info({ dir, ...acks.report }, "command ack queue opened");
  const reports = await DiskQueue.open({ dir: join(dir, "artifact-reports"), maxBytes: ACK_QUEUE_MAX_BYTES });
  logger.info({ dir, ...reports.report }, "artifact report queue opened");
  return { uplink: uplink.queue, acks: acks.queue, reports: reports.queue };
}

export async function startGatewayCore(
  config: GatewayConfig,
  logger: Logger,
  worker?: WorkerRole,
): Promise<GatewayCore> {
  const metrics = new GatewayMetrics();
  // Without a worker role this process is the whole gateway, whatever GATEWAY_WORKERS says.
  const index = worker?.index ?? 0;
  const processes = worker ? config.workers : 1;
  const cloud = new CloudClient({
    baseUrl: config.cloudUrl,
    gatewayKey: config.gatewayKey,
    timeoutMs: config.cloudTimeoutMs,
  });
  const channel = new CommandChannel({
    baseUrl: config.cloudUrl,
    gatewayKey: config.gatewayKey,
    timeoutMs: config.cloudTimeoutMs,
  });
  const forwarderFor = (queue: DiskQueue, forwarderMetrics: GatewayMetrics, forwarderLogger: Logger) =>
    new UplinkForwarder({
      cloud,
      queue,
      logger: forwarderLogger,
      metrics: forwarderMetrics,
      intervalMs: config.forwardIntervalMs,
      maxBatches: config.forwardMaxBatches,
      concurrency: config.forwardConcurrency,
    });
  const queues = await openQueues(workerDir(config.dataDir, index), config, logger);
  const forwarder = forwarderFor(queues.uplink, metrics, logger.child({ component: "uplink" }));
  const commands = new CommandRelay({
    channel,
    acks: queues.acks,
    // Called only after commands.start(), by which time the broker exists.
    publish: (deviceId, command) => broker.publishCommand(deviceId, command),
    logger: logger.child({ component: "downlink" }),
    metrics,
  });
  const artifactLog = logger.child({ component: "artifacts" });
  const artifactChannel = new ArtifactChannel({
    baseUrl: config.cloudUrl,
    gatewayKey: config.gatewayKey,
    timeoutMs: config.cloudTimeoutMs,
  });
  // Each worker keeps its own cache (and fetches each artifact once for itself), and takes its
  // share of the gateway's download limit.
  const artifactCache = await ArtifactCache.open({
    dir: join(workerDir(config.dataDir, index), "artifacts"),
    maxBytes: config.artifacts.cacheMaxBytes,
    channel: artifactChannel,
    logger: artifactLog,
    metrics,
  });
  const chunks = new ChunkServer({
    cache: artifactCache,
    maxDownloads: Math.ceil(config.artifacts.maxDownloads / processes),
    idleMs: config.artifacts.idleMs,
    logger: artifactLog,
    metrics,
  });
  const artifactRelayFor = (reports: DiskQueue, relayMetrics: GatewayMetrics, relayLogger: Logger) =>
    new ArtifactRelay({
      channel: artifactChannel,
      cache: artifactCache,
      reports,
      // Called only after start(), by which time the broker exists.
      publish: (deviceId, offer) => broker.publishOffer(deviceId, offer),
      logger: relayLogger,
      metrics: relayMetrics,
    });
  const artifacts = artifactRelayFor(queues.reports, metrics, artifactLog);

  // Their own metrics: the gauges of this process's queue stay this queue's.
  const orphans = await Promise.all(
    (await orphanedQueueDirs(config.dataDir, index, processes)).map(async (dir) => {
      const orphanLogger = logger.child({ component: "orphaned-queue", dir });
      const orphanMetrics = new GatewayMetrics();
      const orphan = await openQueues(dir, config, orphanLogger);
      const relay = new CommandRelay({
        channel,
        acks: orphan.acks,
        // No device ever becomes ready here, so nothing is published: this relay only delivers acks.
        publish: () => Promise.reject(new Error("an orphaned queue has no devices")),
        logger: orphanLogger,
        metrics: orphanMetrics,
      });
      return {
        forwarder: forwarderFor(orphan.uplink, orphanMetrics, orphanLogger),
        relay,
        // Likewise: no device is ever ready here, so it only delivers reports.
        artifacts: artifactRelayFor(orphan.reports, orphanMetrics, orphanLogger),
      };
    }),
  );

  const log = logger.child({ component: "broker" });
  const intake = new DeviceMessageIntake({ forwarder, commands, artifacts, chunks, metrics, logger: log });
  // The embedded broker, kept apart from the interface both share for what only it can do (takeovers).
  let embedded: EmbeddedBroker | undefined;
  let broker: DeviceBroker;
  if (config.externalBroker) {
    broker = await startBridge({ config: config.externalBroker, intake, commands, artifacts, metrics, logger: log });
  } else {
    embedded = await startEmbeddedBroker({
      config,
      authenticator: new DeviceAuthenticator(cloud, {
        ttlMs: config.authCacheTtlMs,
        staleMaxMs: config.authStaleMaxMs,
        askTimeoutMs: Math.min(config.cloudTimeoutMs, AUTH_ASK_TIMEOUT_MS),
      }),
      intake,
      commands,
      artifacts,
      chunks,
      metrics,
      logger: log,
      claims: worker?.claims,
    });
    broker = embedded;
  }

  // What the uplink holds: this process's queue and the orphaned ones it drains.
  const uplink = {
    get depth() {
      return orphans.reduce((total, orphan) => total + orphan.forwarder.depth, forwarder.depth);
    },
    oldestAgeMs: async (now = Date.now()) =>
      Math.max(
        await forwarder.oldestAgeMs(now),
        ...(await Promise.all(orphans.map((orphan) => orphan.forwarder.oldestAgeMs(now)))),
      ),
  };
  // A worker's queues are one part of the gateway's: the primary reports them all under one id (cluster.ts).
  const reporter = worker
    ? undefined
    : new UplinkReporter({
        cloud,
        forwarder: uplink,
        gatewayId: await gatewayIdOf(config.dataDir, config.gatewayId),
        intervalMs: config.uplinkReportIntervalMs,
        logger: logger.child({ component: "uplink-report" }),
        metrics,
      });

  forwarder.start();
  reporter?.start();
  commands.start();
  artifacts.start();
  for (const orphan of orphans) {
    orphan.forwarder.start();
    orphan.relay.start();
    orphan.artifacts.start();
  }

  return {
    mqttPort: broker.mqttPort,
    mqttTlsPort: broker.mqttTlsPort,
    metrics,
    forwarder,
    artifactCache,
    async health() {
      const oldestQueuedAgeMs = await uplink.oldestAgeMs();
      return { status: "ok", clients: broker.connectedClients, queued: uplink.depth, oldestQueuedAgeMs };
    },
    async renderMetrics() {
      metrics.set("kestrel_gateway_queue_oldest_age_seconds", (await uplink.oldestAgeMs()) / 1000);
      // Read here rather than kept up to date on every message.
      metrics.set("kestrel_gateway_queue_depth", forwarder.depth);
      metrics.set("kestrel_gateway_queue_bytes", queues.uplink.bytes);
      metrics.set("kestrel_gateway_connected_clients", broker.connectedClients);
      return metrics.render();
    },
    disconnectDevice: (deviceId) => embedded?.disconnectDevice(deviceId) ?? Promise.resolve(),
    async stop(deliverMs?: number) {
      await broker.close();
      // After the broker: no ack can arrive any more, and the last ones are still relayed.
      await commands.stop();
      await artifacts.stop();
      artifactCache.close();
      await forwarder.stop(deliverMs);
      await Promise.all(
        orphans.map(async (orphan) =>
          Promise.all([orphan.relay.stop(), orphan.artifacts.stop(), orphan.forwarder.stop(deliverMs)]),
        ),
      );
      await reporter?.stop();
    },
  };
}

export async function startGateway(config: GatewayConfig, logger: Logger): Promise<Gateway> {
  const core = await startGatewayCore(config, logger);
  const http = await serveHealth(
    config,
    {
      health: () => core.health(),
      renderMetrics: () => core.renderMetrics(),
      setLogLevel: async (level) => {
        logger.level = level;
      },
    },
    logger.child({ component: "http" }),
  );
  logger.info(
    {
      mqtt: core.mqttPort,
      mqtts: core.mqttTlsPort,
      host: config.mqttHost,
      http: `${config.httpHost}:${http.port}`,
    },
    "gateway listening",
  );
  return {
    mqttPort: core.mqttPort,
    mqttTlsPort: core.mqttTlsPort,
    httpPort: http.port,
    metrics: core.metrics,
    forwarder: core.forwarder,
    artifactCache: core.artifactCache,
    async stop(deliverMs?: number) {
      await core.stop(deliverMs);
      await close(http.server);
      logger.info("gateway stopped");
    },
  };
}
