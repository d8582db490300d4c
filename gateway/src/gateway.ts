// Composes the gateway: the device-facing MQTT broker (embedded aedes with device
// authentication and topic ACLs, or a bridge to an external broker), the durable
// uplink to the cloud, the command relay, and a small HTTP server for health and
// Prometheus metrics.

import { timingSafeEqual } from "node:crypto";
import { createServer as createHttpServer, type IncomingMessage, type ServerResponse } from "node:http";
import { join } from "node:path";
import type { Logger } from "pino";
import { startBridge } from "./bridge/external-broker.ts";
import { DeviceAuthenticator } from "./broker/device-auth.ts";
import { type DeviceBroker, startEmbeddedBroker } from "./broker/embedded-broker.ts";
import { type GatewayConfig, LOG_LEVELS } from "./config.ts";
import { CommandChannel } from "./downlink/command-channel.ts";
import { CommandRelay } from "./downlink/command-relay.ts";
import { DeviceMessageIntake } from "./intake.ts";
import { GatewayMetrics } from "./metrics.ts";
import { close, listen } from "./servers.ts";
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
  stop(): Promise<void>;
}

function answer(response: ServerResponse, status: number, body: object): void {
  const problem = status >= 400;
  response.writeHead(status, { "content-type": problem ? "application/problem+json" : "application/json" });
  response.end(JSON.stringify(body));
}

/** GET or PUT {"level": "debug"} with `Authorization: Bearer <OPS_TOKEN>`: the log level, changed at run time. */
async function serveLogLevel(
  request: IncomingMessage,
  response: ServerResponse,
  logger: Logger,
  opsToken: string | undefined,
): Promise<void> {
  const given = Buffer.from(request.headers.authorization ?? "");
  const expected = Buffer.from(`Bearer ${opsToken}`);
  if (opsToken === undefined || given.length !== expected.length || !timingSafeEqual(given, expected)) {
    return answer(response, 401, { type: "about:blank", title: "Unauthorized", status: 401, code: "unauthenticated" });
  }
  if (request.method === "PUT") {
    let body = "";
    for await (const chunk of request) {
      body += chunk;
      if (body.length > 1024) break;
    }
    let level: unknown;
    try {
      level = (JSON.parse(body) as { level?: unknown }).level;
    } catch {
      level = undefined;
    }
    if (typeof level !== "string" || !LOG_LEVELS.includes(level)) {
      const detail = `level must be one of ${LOG_LEVELS.join(", ")}`;
      return answer(response, 400, {
        type: "about:blank",
        title: "Bad Request",
        status: 400,
        code: "invalid_request",
        detail,
      });
    }
    const from = logger.level;
    logger.level = level;
    logger.warn({ from, to: level }, "log level changed");
  }
  answer(response, 200, { level: logger.level });
}

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
  const reporter = new UplinkReporter({
    cloud,
    forwarder,
    gatewayId: await gatewayIdOf(config.dataDir, config.gatewayId),
    intervalMs: config.uplinkReportIntervalMs,
    logger: logger.child({ component: "uplink-report" }),
    metrics,
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
        authenticator: new DeviceAuthenticator(cloud, config.authCacheTtlMs),
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
      metrics.set("kestrel_gateway_queue_depth", forwarder.depth);
      metrics.set("kestrel_gateway_connected_clients", broker.connectedClients);
      const text = await metrics.render();
      response.writeHead(200, { "content-type": metrics.registry.contentType });
      response.end(text);
    } else if (request.url === "/log-level" && (request.method === "GET" || request.method === "PUT")) {
      await serveLogLevel(request, response, logger, config.opsToken);
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
  reporter.start();
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
    async stop() {
      await broker.close();
      // After the broker: no ack can arrive any more, and the last ones are still relayed.
      await commands.stop();
      await forwarder.stop();
      await reporter.stop();
      await close(httpServer);
      logger.info("gateway stopped");
    },
  };
}
