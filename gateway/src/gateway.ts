// Composes the gateway: the device-facing MQTT broker (embedded aedes with device
// authentication and topic ACLs, or a bridge to an external broker), the durable
// uplink to the cloud, the command relay, and a small HTTP server for health and
// Prometheus metrics.

import { createServer as createHttpServer, type IncomingMessage, type ServerResponse } from "node:http";
import { join } from "node:path";
import type { Logger } from "pino";
import { startBridge } from "./bridge/external-broker.ts";
import { DeviceAuthenticator } from "./broker/device-auth.ts";
import { type DeviceBroker, startEmbeddedBroker } from "./broker/embedded-broker.ts";
import type { GatewayConfig } from "./config.ts";
import { CommandChannel } from "./downlink/command-channel.ts";
import { CommandRelay } from "./downlink/command-relay.ts";
import { DeviceMessageIntake } from "./intake.ts";
import { GatewayMetrics } from "./metrics.ts";
import { close, listen } from "./servers.ts";
import { CloudClient } from "./uplink/cloud-client.ts";
import { DiskQueue } from "./uplink/disk-queue.ts";
import { UplinkForwarder } from "./uplink/forwarder.ts";

export interface Gateway {
  /** Undefined when the plain TCP listener is off. */
  readonly mqttPort: number | undefined;
  /** Undefined when no TLS listener is configured. */
  readonly mqttTlsPort: number | undefined;
  readonly httpPort: number;
  readonly metrics: GatewayMetrics;
  readonly forwarder: UplinkForwarder;
  /** `deliverMs`: how long the uplink may still try to deliver what is queued (it stays on disk). */
  stop(deliverMs?: number): Promise<void>;
}

/** A device waits for its CONNACK while the cloud is asked: the question gets this long at most. */
const AUTH_ASK_TIMEOUT_MS = 3_000;

/** Acks are small and few: this holds hundreds of thousands while the cloud is away. */
const ACK_QUEUE_MAX_BYTES = 64 * 1024 * 1024;

export async function startGateway(config: GatewayConfig, logger: Logger): Promise<Gateway> {
  const metrics = new GatewayMetrics();
  const cloud = new CloudClient({
    baseUrl: config.cloudUrl,
    gatewayKey: config.gatewayKey,
    timeoutMs: config.cloudTimeoutMs,
  });
  const { queue, report } = await DiskQueue.open({
    dir: join(config.dataDir, "uplink"),
    maxBytes: config.queueMaxBytes,
  });
  logger.info({ dataDir: config.dataDir, ...report }, "uplink queue opened");
  const acks = await DiskQueue.open({ dir: join(config.dataDir, "acks"), maxBytes: ACK_QUEUE_MAX_BYTES });
  logger.info({ ...acks.report }, "command ack queue opened");
  const forwarder = new UplinkForwarder({
    cloud,
    queue,
    logger: logger.child({ component: "uplink" }),
    metrics,
    intervalMs: config.forwardIntervalMs,
    maxBatches: config.forwardMaxBatches,
    concurrency: config.forwardConcurrency,
  });
  const commands = new CommandRelay({
    channel: new CommandChannel({
      baseUrl: config.cloudUrl,
      gatewayKey: config.gatewayKey,
      timeoutMs: config.cloudTimeoutMs,
    }),
    acks: acks.queue,
    // Called only after commands.start(), by which time the broker exists.
    publish: (deviceId, command) => broker.publishCommand(deviceId, command),
    logger: logger.child({ component: "downlink" }),
    metrics,
  });
  const log = logger.child({ component: "broker" });
  const intake = new DeviceMessageIntake({ forwarder, commands, metrics, logger: log });
  const broker: DeviceBroker = config.externalBroker
    ? await startBridge({ config: config.externalBroker, intake, commands, metrics, logger: log })
    : await startEmbeddedBroker({
        config,
        authenticator: new DeviceAuthenticator(cloud, {
          ttlMs: config.authCacheTtlMs,
          staleMaxMs: config.authStaleMaxMs,
          askTimeoutMs: Math.min(config.cloudTimeoutMs, AUTH_ASK_TIMEOUT_MS),
        }),
        intake,
        commands,
        metrics,
        logger: log,
      });

  const serveHttp = async (request: IncomingMessage, response: ServerResponse) => {
    if (request.method === "GET" && request.url === "/healthz") {
      const oldestQueuedAgeMs = await forwarder.oldestAgeMs();
      response.writeHead(200, { "content-type": "application/json" });
      response.end(
        JSON.stringify({ status: "ok", clients: broker.connectedClients, queued: forwarder.depth, oldestQueuedAgeMs }),
      );
    } else if (request.method === "GET" && request.url === "/metrics") {
      metrics.set("kestrel_gateway_queue_oldest_age_seconds", (await forwarder.oldestAgeMs()) / 1000);
      metrics.set("kestrel_gateway_queue_bytes", queue.bytes);
      const memory = process.memoryUsage();
      metrics.set("process_resident_memory_bytes", memory.rss);
      metrics.set("nodejs_heap_used_bytes", memory.heapUsed);
      response.writeHead(200, { "content-type": "text/plain; version=0.0.4" });
      response.end(metrics.render());
    } else {
      response.writeHead(404, { "content-type": "application/problem+json" });
      response.end(JSON.stringify({ type: "about:blank", title: "Not Found", status: 404, code: "not_found" }));
    }
  };
  const httpServer = createHttpServer((request, response) => {
    serveHttp(request, response).catch((error: unknown) => {
      log.error({ err: error instanceof Error ? error.message : String(error) }, "health or metrics request failed");
      if (!response.headersSent) response.writeHead(500, { "content-type": "application/problem+json" });
      response.end(JSON.stringify({ type: "about:blank", title: "Internal Server Error", status: 500 }));
    });
  });

  const httpPort = await listen(httpServer, config.httpPort, config.httpHost);
  forwarder.start();
  commands.start();
  logger.info(
    {
      mqtt: broker.mqttPort,
      mqtts: broker.mqttTlsPort,
      host: config.mqttHost,
      http: `${config.httpHost}:${httpPort}`,
    },
    "gateway listening",
  );

  return {
    mqttPort: broker.mqttPort,
    mqttTlsPort: broker.mqttTlsPort,
    httpPort,
    metrics,
    forwarder,
    async stop(deliverMs?: number) {
      await broker.close();
      // After the broker: no ack can arrive any more, and the last ones are still relayed.
      await commands.stop();
      await forwarder.stop(deliverMs);
      await close(httpServer);
      logger.info("gateway stopped");
    },
  };
}
