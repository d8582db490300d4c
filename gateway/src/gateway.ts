// Composes the gateway: the device-facing MQTT broker (aedes) with device
// authentication and topic ACLs, the uplink to the cloud, and a small HTTP
// server for health and Prometheus metrics.

import { createServer as createHttpServer, type Server as HttpServer } from "node:http";
import { type AddressInfo, createServer as createNetServer, type Server as NetServer } from "node:net";
import { join } from "node:path";
import { createServer as createTlsServer, TLSSocket, type Server as TlsServer } from "node:tls";
import { isDeviceId, parseCommandAck, parseDeviceState, parseTelemetryBatch, parseTopic, topics } from "@kestrel/wire";
import { Aedes, type AuthenticateError, type Client, type PublishPacket, type Subscription } from "aedes";
import type { Logger } from "pino";
import { mayPublish, maySubscribe } from "./broker/acl.ts";
import { DeviceAuthenticator } from "./broker/device-auth.ts";
import type { GatewayConfig } from "./config.ts";
import { CommandChannel } from "./downlink/command-channel.ts";
import { CommandRelay } from "./downlink/command-relay.ts";
import { GatewayMetrics } from "./metrics.ts";
import { CloudClient, CloudError } from "./uplink/cloud-client.ts";
import { DiskQueue, QueueFullError } from "./uplink/disk-queue.ts";
import { UplinkForwarder } from "./uplink/forwarder.ts";

export interface Gateway {
  readonly mqttPort: number;
  /** Undefined when no TLS listener is configured. */
  readonly mqttTlsPort: number | undefined;
  readonly httpPort: number;
  readonly metrics: GatewayMetrics;
  readonly forwarder: UplinkForwarder;
  stop(): Promise<void>;
}

// MQTT 3.1.1 CONNACK return codes.
const IDENTIFIER_REJECTED = 2;
const SERVER_UNAVAILABLE = 3;
const BAD_USERNAME_OR_PASSWORD = 4;
const NOT_AUTHORIZED = 5;

function authError(message: string, returnCode: number): AuthenticateError {
  return Object.assign(new Error(message), { returnCode }) as AuthenticateError;
}

interface PeerCertificate {
  authorized: boolean;
  error: string;
  commonName: string | undefined;
}

/** The client certificate a TLS connection presented, if any. */
function clientCertificate(conn: unknown): PeerCertificate | undefined {
  if (!(conn instanceof TLSSocket)) return undefined;
  const peer = conn.getPeerCertificate();
  if (!peer || Object.keys(peer).length === 0) return undefined;
  const commonName = peer.subject?.CN;
  return {
    authorized: conn.authorized,
    error: String(conn.authorizationError ?? ""),
    commonName: Array.isArray(commonName) ? commonName[0] : commonName,
  };
}

function listen(server: NetServer | HttpServer | TlsServer, port: number, host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      server.off("error", reject);
      resolve((server.address() as AddressInfo).port);
    });
  });
}

function close(server: NetServer | HttpServer | TlsServer): Promise<void> {
  return new Promise((resolve) => server.close(() => resolve()));
}

export async function startGateway(config: GatewayConfig, logger: Logger): Promise<Gateway> {
  const metrics = new GatewayMetrics();
  const cloud = new CloudClient({
    baseUrl: config.cloudUrl,
    gatewayKey: config.gatewayKey,
    timeoutMs: config.cloudTimeoutMs,
  });
  const authenticator = new DeviceAuthenticator(cloud, config.authCacheTtlMs);
  const { queue, report } = await DiskQueue.open({
    dir: join(config.dataDir, "uplink"),
    maxBytes: config.queueMaxBytes,
  });
  logger.info({ dataDir: config.dataDir, ...report }, "uplink queue opened");
  const forwarder = new UplinkForwarder({
    cloud,
    queue,
    logger: logger.child({ component: "uplink" }),
    metrics,
    intervalMs: config.forwardIntervalMs,
    maxBatches: config.forwardMaxBatches,
  });
  const broker = await Aedes.createBroker({ maxClientsIdLength: 64 });
  const log = logger.child({ component: "broker" });
  const commands = new CommandRelay({
    channel: new CommandChannel({
      baseUrl: config.cloudUrl,
      gatewayKey: config.gatewayKey,
      timeoutMs: config.cloudTimeoutMs,
    }),
    publish: (deviceId, command) =>
      new Promise((resolve, reject) =>
        broker.publish(
          {
            cmd: "publish",
            topic: topics.command(deviceId),
            payload: Buffer.from(JSON.stringify(command)),
            qos: 1,
            dup: false,
            retain: false,
          },
          (error) => (error ? reject(error) : resolve()),
        ),
      ),
    logger: logger.child({ component: "downlink" }),
    metrics,
  });

  const refuse = (reason: string, detail: object, message: string) => {
    metrics.inc("kestrel_gateway_messages_rejected_total", { reason });
    log.warn({ ...detail, reason }, message);
  };

  broker.authenticate = (client, username, password, done) => {
    const deviceId = client.id;
    const deny = (reason: string, code: number, message: string) => {
      metrics.inc("kestrel_gateway_auth_failures_total", { reason });
      log.warn({ deviceId, reason }, message);
      done(authError(message, code), false);
    };
    if (!isDeviceId(deviceId)) return deny("bad_client_id", IDENTIFIER_REJECTED, "client id is not a device id");
    const certificate = clientCertificate(client.conn);
    if (certificate) {
      // Mutual TLS: a certificate from the device CA whose CN is the client id proves the identity.
      if (!certificate.authorized)
        return deny("bad_client_certificate", NOT_AUTHORIZED, `client certificate refused: ${certificate.error}`);
      if (certificate.commonName !== deviceId)
        return deny("certificate_cn_mismatch", NOT_AUTHORIZED, "client certificate CN differs from the client id");
      metrics.inc("kestrel_gateway_connections_total");
      log.info({ deviceId, auth: "certificate" }, "device authenticated");
      return done(null, true);
    }
    if (username !== deviceId)
      return deny("username_mismatch", BAD_USERNAME_OR_PASSWORD, "username must equal client id");
    if (!password || password.length === 0) return deny("no_token", BAD_USERNAME_OR_PASSWORD, "no token given");
    authenticator.verify(deviceId, password.toString("utf8")).then(
      (decision) => {
        if (!decision.ok) return deny("wrong_credentials", BAD_USERNAME_OR_PASSWORD, "unknown device or wrong token");
        metrics.inc("kestrel_gateway_connections_total");
        log.info({ deviceId, cached: decision.cached }, "device authenticated");
        done(null, true);
      },
      (error: unknown) => {
        const message = error instanceof Error ? error.message : String(error);
        const reason = error instanceof CloudError ? error.code : "internal_error";
        deny(reason, SERVER_UNAVAILABLE, `cannot check credentials now: ${message}`);
      },
    );
  };

  broker.authorizePublish = (client: Client | null, packet: PublishPacket, done) => {
    // A will left by a client that is already gone arrives without a client.
    const deviceId = client?.id ?? parseTopic(packet.topic)?.deviceId;
    if (!deviceId || !mayPublish(deviceId, packet.topic)) {
      metrics.inc("kestrel_gateway_acl_denials_total", { action: "publish" });
      log.warn({ deviceId, topic: packet.topic }, "publish outside the device's topics refused");
      return done(new Error("not authorized to publish to this topic"));
    }
    const kind = parseTopic(packet.topic)?.kind;
    const text = Buffer.isBuffer(packet.payload) ? packet.payload.toString("utf8") : String(packet.payload);
    let durable: Promise<void> | undefined;
    if (kind === "telemetry") {
      const parsed = parseTelemetryBatch(text);
      // A malformed payload is acknowledged and dropped: refusing it would make the
      // device resend the same bad message forever.
      if (!parsed.ok) {
        refuse(parsed.error.code, { deviceId }, `telemetry dropped: ${parsed.error.message}`);
        return done(null);
      }
      durable = forwarder.enqueueTelemetry(deviceId, parsed.value);
    } else if (kind === "state") {
      const parsed = parseDeviceState(text);
      if (!parsed.ok) {
        refuse(parsed.error.code, { deviceId }, `state dropped: ${parsed.error.message}`);
        return done(null);
      }
      durable = forwarder.enqueueState(deviceId, parsed.value);
    } else if (kind === "cmd/ack") {
      const parsed = parseCommandAck(text);
      if (!parsed.ok) {
        refuse(parsed.error.code, { deviceId }, `command ack dropped: ${parsed.error.message}`);
        return done(null);
      }
      commands.ack(deviceId, parsed.value);
    }
    if (!durable) {
      metrics.inc("kestrel_gateway_messages_in_total", { kind: kind ?? "unknown" });
      return done(null);
    }
    // aedes writes the PUBACK only after this callback, so an acknowledged message is on disk.
    durable.then(
      () => {
        metrics.inc("kestrel_gateway_messages_in_total", { kind: kind ?? "unknown" });
        done(null);
      },
      (error: unknown) => {
        // Refusing closes the connection without a PUBACK: the device keeps the message and retries later.
        if (error instanceof QueueFullError) metrics.inc("kestrel_gateway_queue_refused_total");
        else metrics.inc("kestrel_gateway_messages_rejected_total", { reason: "queue_write_failed" });
        log.error({ deviceId, err: error instanceof Error ? error.message : String(error) }, "publish not queued");
        done(error instanceof Error ? error : new Error(String(error)));
      },
    );
  };

  broker.authorizeSubscribe = (client: Client, subscription: Subscription, done) => {
    if (maySubscribe(client.id, subscription.topic)) return done(null, subscription);
    metrics.inc("kestrel_gateway_acl_denials_total", { action: "subscribe" });
    log.warn({ deviceId: client.id, topic: subscription.topic }, "subscription outside the device's topics refused");
    done(null, null);
  };

  broker.on("client", () => metrics.set("kestrel_gateway_connected_clients", broker.connectedClients));
  // Commands are fetched only for devices listening on their command topic; the rest stay queued in the cloud.
  broker.on("subscribe", (subscriptions, client) => {
    if (client && subscriptions.some((s) => s.topic === topics.command(client.id))) commands.deviceReady(client.id);
  });
  broker.on("unsubscribe", (unsubscriptions, client) => {
    if (client && unsubscriptions.includes(topics.command(client.id))) commands.deviceGone(client.id);
  });
  broker.on("clientDisconnect", (client) => {
    commands.deviceGone(client.id);
    metrics.set("kestrel_gateway_connected_clients", broker.connectedClients);
    log.info({ deviceId: client.id }, "device disconnected");
  });
  broker.on("clientError", (client, error) => log.warn({ deviceId: client.id, err: error.message }, "client error"));
  broker.on("connectionError", (_client, error) => {
    metrics.inc("kestrel_gateway_messages_rejected_total", { reason: "malformed_packet" });
    log.warn({ err: error.message }, "connection refused before CONNECT completed");
  });

  const mqttServer = createNetServer(broker.handle);
  const tlsServer = config.tls
    ? createTlsServer(
        {
          cert: config.tls.certChain,
          key: config.tls.key,
          minVersion: "TLSv1.2",
          // Asked for, not required: a device without a certificate authenticates with its token.
          requestCert: config.tls.clientCa !== undefined,
          rejectUnauthorized: false,
          ...(config.tls.clientCa ? { ca: config.tls.clientCa } : {}),
        },
        broker.handle,
      )
    : undefined;
  tlsServer?.on("tlsClientError", (error) => {
    metrics.inc("kestrel_gateway_auth_failures_total", { reason: "tls_handshake" });
    log.warn({ err: error.message }, "TLS handshake failed");
  });
  const httpServer = createHttpServer((request, response) => {
    if (request.method === "GET" && request.url === "/healthz") {
      response.writeHead(200, { "content-type": "application/json" });
      response.end(
        JSON.stringify({
          status: "ok",
          clients: broker.connectedClients,
          queued: forwarder.depth,
          oldestQueuedAgeMs: forwarder.oldestAgeMs(),
        }),
      );
    } else if (request.method === "GET" && request.url === "/metrics") {
      metrics.set("kestrel_gateway_queue_oldest_age_seconds", forwarder.oldestAgeMs() / 1000);
      metrics.set("kestrel_gateway_queue_bytes", queue.bytes);
      response.writeHead(200, { "content-type": "text/plain; version=0.0.4" });
      response.end(metrics.render());
    } else {
      response.writeHead(404, { "content-type": "application/problem+json" });
      response.end(JSON.stringify({ type: "about:blank", title: "Not Found", status: 404, code: "not_found" }));
    }
  });

  const mqttPort = await listen(mqttServer, config.mqttPort, config.mqttHost);
  const mqttTlsPort = tlsServer && config.tls ? await listen(tlsServer, config.tls.port, config.mqttHost) : undefined;
  const httpPort = await listen(httpServer, config.httpPort, config.httpHost);
  forwarder.start();
  commands.start();
  logger.info({ mqtt: `${config.mqttHost}:${mqttPort}`, http: `${config.httpHost}:${httpPort}` }, "gateway listening");

  return {
    mqttPort,
    mqttTlsPort,
    httpPort,
    metrics,
    forwarder,
    async stop() {
      const closing = Promise.all([close(mqttServer), tlsServer ? close(tlsServer) : undefined]);
      await new Promise<void>((resolve) => broker.close(() => resolve()));
      await closing;
      // After the broker: no ack can arrive any more, and the last ones are still relayed.
      await commands.stop();
      await forwarder.stop();
      await close(httpServer);
      logger.info("gateway stopped");
    },
  };
}
