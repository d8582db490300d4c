// The embedded device-facing MQTT broker (aedes) on TCP and TLS: device authentication (token or
// client certificate), topic ACLs, and every accepted publish handed to the intake before its PUBACK.

import { createServer as createNetServer } from "node:net";
import { createServer as createTlsServer, DEFAULT_CIPHERS, TLSSocket } from "node:tls";
import { type DeviceCommand, isDeviceId, parseTopic, topics } from "@kestrel/wire";
import { type ArtifactOffer, artifactTopics } from "@kestrel/wire/artifacts";
import { Aedes, type AuthenticateError, type Client, type PublishPacket, type Subscription } from "aedes";
import mqttPacket from "mqtt-packet";
import type { Logger } from "pino";
import type { ArtifactRelay } from "../artifacts/artifact-relay.ts";
import type { ChunkServer } from "../artifacts/chunk-server.ts";
import type { GatewayConfig } from "../config.ts";
import type { CommandRelay } from "../downlink/command-relay.ts";
import type { DeviceMessageIntake, OutgoingMessage } from "../intake.ts";
import type { GatewayMetrics } from "../metrics.ts";
import { close, listen } from "../servers.ts";
import { CloudError } from "../uplink/cloud-client.ts";
import { isDeviceUplink, mayPublish, maySubscribe } from "./acl.ts";
import type { DeviceAuthenticator } from "./device-auth.ts";

/** Where devices connect: the embedded broker, or an external one through the bridge. */
export interface DeviceBroker {
  /** Undefined when this gateway has no plain TCP listener (or no listener at all, bridging). */
  readonly mqttPort: number | undefined;
  readonly mqttTlsPort: number | undefined;
  /** Devices connected (embedded) or known online from their state (bridge). */
  readonly connectedClients: number;
  /** Publishes a command to the device's command topic at QoS 1; resolves once the broker took it. */
  publishCommand(deviceId: string, command: DeviceCommand): Promise<void>;
  /** Publishes an artifact offer to the device's offer topic at QoS 1; resolves once the broker took it. */
  publishOffer(deviceId: string, offer: ArtifactOffer): Promise<void>;
  /** Stops taking messages; the caller then drains the queues. */
  close(): Promise<void>;
}

/**
 * The other processes of a gateway of several (GATEWAY_WORKERS): MQTT lets a device's new connection
 * take over its old one, which may be held by another process.
 */
export interface DeviceClaims {
  /** Resolves once no other process holds a connection of this device (its will, if any, is queued there). */
  claim(deviceId: string): Promise<void>;
}

export interface EmbeddedBrokerOptions {
  config: GatewayConfig;
  authenticator: DeviceAuthenticator;
  intake: DeviceMessageIntake;
  commands: CommandRelay;
  artifacts: ArtifactRelay;
  chunks: ChunkServer;
  metrics: GatewayMetrics;
  logger: Logger;
  /** Set when this process is one of several workers. */
  claims?: DeviceClaims | undefined;
}

export interface EmbeddedBroker extends DeviceBroker {
  /** Closes the device's connection, if it has one here; its will is published as on any other loss. */
  disconnectDevice(deviceId: string): Promise<void>;
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

export async function startEmbeddedBroker(options: EmbeddedBrokerOptions): Promise<EmbeddedBroker> {
  const { config, authenticator, intake, commands, artifacts, chunks, metrics, claims } = options;
  const log = options.logger;
  const broker = await Aedes.createBroker({ maxClientsIdLength: 64 });

  broker.authenticate = (client, username, password, done) => {
    const deviceId = client.id;
    const deny = (reason: string, code: number, message: string) => {
      metrics.inc("kestrel_gateway_auth_failures_total", { reason });
      log.warn({ deviceId, reason }, message);
      done(authError(message, code), false);
    };
    // Another worker's connection of this device goes first, as aedes closes one of its own.
    const admit = () => (claims ? claims.claim(deviceId).then(() => done(null, true)) : done(null, true));
    if (!isDeviceId(deviceId)) return deny("bad_client_id", IDENTIFIER_REJECTED, "client id is not a device id");
    const certificate = clientCertificate(client.conn);
    if (certificate) {
      // Mutual TLS: a certificate from the device CA whose CN is the client id proves the identity.
      if (!certificate.authorized) {
        const reason =
          certificate.error === "CERT_HAS_EXPIRED" ? "client_certificate_expired" : "bad_client_certificate";
        return deny(reason, NOT_AUTHORIZED, `client certificate refused: ${certificate.error}`);
      }
      if (certificate.commonName !== deviceId)
        return deny("certificate_cn_mismatch", NOT_AUTHORIZED, "client certificate CN differs from the client id");
      metrics.inc("kestrel_gateway_connections_total", { auth: "certificate" });
      log.info({ deviceId, auth: "certificate" }, "device authenticated");
      return admit();
    }
    if (username !== deviceId)
      return deny("username_mismatch", BAD_USERNAME_OR_PASSWORD, "username must equal client id");
    if (!password || password.length === 0) return deny("no_token", BAD_USERNAME_OR_PASSWORD, "no token given");
    authenticator.verify(deviceId, password.toString("utf8")).then(
      (decision) => {
        if (!decision.ok) return deny("wrong_credentials", BAD_USERNAME_OR_PASSWORD, "unknown device or wrong token");
        metrics.inc("kestrel_gateway_connections_total", { auth: "token" });
        if (decision.source === "stale") {
          // Let in on the cloud's earlier yes, because the cloud cannot answer now.
          metrics.inc("kestrel_gateway_auth_stale_admissions_total");
          log.warn({ deviceId }, "device admitted on an earlier verdict: the cloud cannot check credentials now");
        } else log.info({ deviceId, auth: "token", source: decision.source }, "device authenticated");
        return admit();
      },
      (error: unknown) => {
        const message = error instanceof Error ? error.message : String(error);
        const reason = error instanceof CloudError ? error.code : "internal_error";
        deny(reason, SERVER_UNAVAILABLE, `cannot check credentials now: ${message}`);
      },
    );
  };

  /**
   * Straight to the device's own connection, if it subscribed to the topic (no other client may): no
   * topic matching across every subscription, which cost a third of the gateway's throughput. QoS 0:
   * a lost telemetry ack only delays the device, which resends and gets the next, cumulative one; a
   * lost chunk is asked for again.
   */
  const writeToDevice = (client: Client, message: OutgoingMessage): boolean => {
    const subscriptions = (client as Client & { subscriptions?: Record<string, unknown> }).subscriptions;
    if (!subscriptions?.[message.topic] || !client.connected || client.conn.destroyed) return false;
    client.conn.write(
      mqttPacket.generate({
        cmd: "publish",
        topic: message.topic,
        payload: message.payload,
        qos: 0,
        dup: false,
        retain: false,
      }),
    );
    return true;
  };

  broker.authorizePublish = (client: Client | null, packet: PublishPacket, done) => {
    // A will left by a client that is already gone arrives without a client.
    const deviceId = client?.id ?? parseTopic(packet.topic)?.deviceId;
    if (!deviceId || !mayPublish(deviceId, packet.topic)) {
      metrics.inc("kestrel_gateway_acl_denials_total", { action: "publish" });
      log.warn({ deviceId, topic: packet.topic }, "publish outside the device's topics refused");
      return done(new Error("not authorized to publish to this topic"));
    }
    // aedes writes the PUBACK only after this callback, so an acknowledged message is on disk. Refusing
    // closes the connection without a PUBACK: the device keeps the message and retries later.
    intake.accept(deviceId, packet.topic, packet.payload).then(
      (accepted) => {
        const ack = accepted?.telemetryAck;
        const replies = accepted?.replies ?? [];
        if (!client || (!ack && replies.length === 0)) return done(null);
        // aedes writes the PUBACK synchronously inside done: corked, it leaves with the ack (or a
        // window of chunks) in one segment, instead of small writes for the device's delayed ACK to hold.
        client.conn.cork();
        done(null);
        if (ack && writeToDevice(client, ack)) metrics.inc("kestrel_gateway_telemetry_acks_published_total");
        for (const reply of replies) writeToDevice(client, reply);
        process.nextTick(() => client.conn.uncork());
      },
      (error: unknown) => done(error instanceof Error ? error : new Error(String(error))),
    );
  };

  // What devices publish has no subscriber by construction (maySubscribe): after the intake it needs
  // none of aedes' routing (two subscription-trie matches, a packet copy, a retained store nobody
  // reads), 6-8% of the CPU a message took at 1,000 devices. Commands, published by the gateway, are
  // routed as before.
  const route = broker.publish.bind(broker) as (packet: PublishPacket, ...rest: unknown[]) => void;
  Object.assign(broker, {
    publish(packet: PublishPacket, ...rest: unknown[]) {
      if (!isDeviceUplink(packet.topic)) return route(packet, ...rest);
      // aedes calls publish(packet, client, done) or publish(packet, done).
      const done = rest.at(-1);
      if (typeof done === "function") done();
    },
  });

  broker.authorizeSubscribe = (client: Client, subscription: Subscription, done) => {
    if (maySubscribe(client.id, subscription.topic)) return done(null, subscription);
    metrics.inc("kestrel_gateway_acl_denials_total", { action: "subscribe" });
    log.warn({ deviceId: client.id, topic: subscription.topic }, "subscription outside the device's topics refused");
    done(null, null);
  };

  broker.on("client", () => metrics.set("kestrel_gateway_connected_clients", broker.connectedClients));
  // Commands are fetched only for devices listening on their command topic; the rest stay queued in the cloud.
  broker.on("subscribe", (subscriptions, client) => {
    if (!client) return;
    if (subscriptions.some((s) => s.topic === topics.command(client.id))) commands.deviceReady(client.id);
    if (subscriptions.some((s) => s.topic === artifactTopics.offer(client.id))) artifacts.deviceReady(client.id);
  });
  broker.on("unsubscribe", (unsubscriptions, client) => {
    if (client && unsubscriptions.includes(topics.command(client.id))) commands.deviceGone(client.id);
    if (client && unsubscriptions.includes(artifactTopics.offer(client.id))) artifacts.deviceGone(client.id);
  });
  broker.on("clientDisconnect", (client) => {
    commands.deviceGone(client.id);
    artifacts.deviceGone(client.id);
    chunks.deviceGone(client.id);
    metrics.set("kestrel_gateway_connected_clients", broker.connectedClients);
    log.info({ deviceId: client.id }, "device disconnected");
  });
  broker.on("clientError", (client, error) => log.warn({ deviceId: client.id, err: error.message }, "client error"));
  broker.on("connectionError", (_client, error) => {
    metrics.inc("kestrel_gateway_messages_rejected_total", { reason: "malformed_packet" });
    log.warn({ err: error.message }, "connection refused before CONNECT completed");
  });

  // Every device connection without Nagle's algorithm: each PUBACK is a small write the device waits
  // for, and held behind an unacknowledged one it would wait for the device's delayed ACK (~40 ms).
  const mqttServer = config.mqttPort === undefined ? undefined : createNetServer({ noDelay: true }, broker.handle);
  const tlsServer = config.tls
    ? createTlsServer(
        {
          noDelay: true,
          cert: config.tls.certificates.map((certificate) => certificate.certChain),
          key: config.tls.certificates.map((certificate) => certificate.key),
          minVersion: "TLSv1.2",
          // Devices speak TLS 1.2 with Moddable's suites (@kestrel/wire DEVICE_TLS): DHE-RSA needs DH
          // parameters; RSA key exchange (no forward secrecy) is refused.
          dhparam: "auto",
          ciphers: `${DEFAULT_CIPHERS}:!kRSA`,
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

  const mqttPort =
    mqttServer && config.mqttPort !== undefined
      ? await listen(mqttServer, config.mqttPort, config.mqttHost)
      : undefined;
  const mqttTlsPort = tlsServer && config.tls ? await listen(tlsServer, config.tls.port, config.mqttHost) : undefined;

  /** QoS 1 through aedes to whoever subscribed (the device, at the QoS it subscribed with). */
  const publish = (topic: string, message: object) =>
    new Promise<void>((resolve, reject) =>
      broker.publish(
        { cmd: "publish", topic, payload: Buffer.from(JSON.stringify(message)), qos: 1, dup: false, retain: false },
        (error) => (error ? reject(error) : resolve()),
      ),
    );

  return {
    mqttPort,
    mqttTlsPort,
    get connectedClients() {
      return broker.connectedClients;
    },
    publishCommand: (deviceId, command) => publish(topics.command(deviceId), command),
    publishOffer: (deviceId, offer) => publish(artifactTopics.offer(deviceId), offer),
    disconnectDevice: (deviceId) =>
      new Promise((resolve) => {
        const client = (broker as Aedes & { clients: Record<string, Client | undefined> }).clients[deviceId];
        if (client) client.close(() => resolve());
        else resolve();
      }),
    async close() {
      const closing = Promise.all([mqttServer && close(mqttServer), tlsServer && close(tlsServer)]);
      await new Promise<void>((resolve) => broker.close(() => resolve()));
      await closing;
    },
  };
}
