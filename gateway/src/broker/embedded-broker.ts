// The embedded device-facing MQTT broker (our session server) on TCP and TLS: device authentication
// (token or client certificate), topic ACLs, and every accepted publish handed to the intake before its PUBACK.

import { createServer as createNetServer, type Socket } from "node:net";
import { createServer as createTlsServer, DEFAULT_CIPHERS, TLSSocket } from "node:tls";
import { type DeviceCommand, isDeviceId, topics } from "@kestrel/wire";
import { type ArtifactOffer, artifactTopics } from "@kestrel/wire/artifacts";
import type { Logger } from "pino";
import type { ArtifactRelay } from "../artifacts/artifact-relay.ts";
import type { ChunkServer } from "../artifacts/chunk-server.ts";
import type { GatewayConfig } from "../config.ts";
import type { CommandRelay } from "../downlink/command-relay.ts";
import type { AcceptedMessage, DeviceMessageIntake } from "../intake.ts";
import type { GatewayMetrics } from "../metrics.ts";
import { close, listen } from "../servers.ts";
import { CloudError } from "../uplink/cloud-client.ts";
import { mayPublish, maySubscribe } from "./acl.ts";
import type { DeviceAuthenticator } from "./device-auth.ts";
import { ConnackCode, MqttProtocolError } from "./mqtt-codec.ts";
import { type ConnectRequest, type MqttSession, MqttSessionServer, type OutgoingMessage } from "./session-server.ts";

/** Where devices connect: the embedded broker, or an external one through the bridge. */
export interface DeviceBroker {
  /** Undefined when this gateway has no plain TCP listener (or no listener at all, bridging). */
  readonly mqttPort: number | undefined;
  readonly mqttTlsPort: number | undefined;
  /** Devices connected (embedded) or known online from their state (bridge). */
  readonly connectedClients: number;
  /**
   * Publishes a command to the device's command topic at QoS 1; resolves once the broker took it, and
   * rejects when the device cannot get it here (not connected, not subscribed, not reading).
   */
  publishCommand(deviceId: string, command: DeviceCommand): Promise<void>;
  /** Publishes an artifact offer to the device's offer topic at QoS 1; rejects as publishCommand does. */
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

interface PeerCertificate {
  authorized: boolean;
  error: string;
  commonName: string | undefined;
}

/** The client certificate a TLS connection presented, if any. */
function clientCertificate(socket: Socket): PeerCertificate | undefined {
  if (!(socket instanceof TLSSocket)) return undefined;
  const peer = socket.getPeerCertificate();
  if (!peer || Object.keys(peer).length === 0) return undefined;
  const commonName = peer.subject?.CN;
  return {
    authorized: socket.authorized,
    error: String(socket.authorizationError ?? ""),
    commonName: Array.isArray(commonName) ? commonName[0] : commonName,
  };
}

export async function startEmbeddedBroker(options: EmbeddedBrokerOptions): Promise<EmbeddedBroker> {
  const { config, authenticator, intake, commands, artifacts, chunks, metrics, claims } = options;
  const log = options.logger;

  /** Resolves with the CONNACK return code: a device id, then its certificate or its token. */
  const authenticate = async (request: ConnectRequest, socket: Socket): Promise<number> => {
    const { clientId: deviceId, username, password, will } = request;
    const deny = (reason: string, code: number, message: string) => {
      metrics.inc("kestrel_gateway_auth_failures_total", { reason });
      log.warn({ deviceId, reason }, message);
      return code;
    };
    if (!isDeviceId(deviceId))
      return deny("bad_client_id", ConnackCode.identifierRejected, "client id is not a device id");
    if (will && !mayPublish(deviceId, will.topic))
      return deny("will_outside_topics", ConnackCode.notAuthorized, "last will outside the device's topics");
    const certificate = clientCertificate(socket);
    let auth: "certificate" | "token";
    if (certificate) {
      // Mutual TLS: a certificate from the device CA whose CN is the client id proves the identity.
      if (!certificate.authorized) {
        const reason =
          certificate.error === "CERT_HAS_EXPIRED" ? "client_certificate_expired" : "bad_client_certificate";
        return deny(reason, ConnackCode.notAuthorized, `client certificate refused: ${certificate.error}`);
      }
      if (certificate.commonName !== deviceId)
        return deny(
          "certificate_cn_mismatch",
          ConnackCode.notAuthorized,
          "client certificate CN differs from the client id",
        );
      auth = "certificate";
      log.info({ deviceId, auth }, "device authenticated");
    } else {
      if (username !== deviceId)
        return deny("username_mismatch", ConnackCode.badUsernameOrPassword, "username must equal client id");
      if (!password || password.length === 0)
        return deny("no_token", ConnackCode.badUsernameOrPassword, "no token given");
      let decision: Awaited<ReturnType<DeviceAuthenticator["verify"]>>;
      try {
        decision = await authenticator.verify(deviceId, password.toString("utf8"));
      } catch (error) {
        const message = error instanceof Error ? error.message : String(error);
        const reason = error instanceof CloudError ? error.code : "internal_error";
        return deny(reason, ConnackCode.serverUnavailable, `cannot check credentials now: ${message}`);
      }
      if (!decision.ok)
        return deny("wrong_credentials", ConnackCode.badUsernameOrPassword, "unknown device or wrong token");
      auth = "token";
      if (decision.source === "stale") {
        // Let in on the cloud's earlier yes, because the cloud cannot answer now.
        metrics.inc("kestrel_gateway_auth_stale_admissions_total");
        log.warn({ deviceId }, "device admitted on an earlier verdict: the cloud cannot check credentials now");
      } else log.info({ deviceId, auth, source: decision.source }, "device authenticated");
    }
    metrics.inc("kestrel_gateway_connections_total", { auth });
    // Another worker's connection of this device closes first, as the session server closes one of its own.
    await claims?.claim(deviceId);
    return ConnackCode.accepted;
  };

  const telemetryAcksPublished = metrics.counter("kestrel_gateway_telemetry_acks_published_total");
  /** What follows a PUBACK (below): the telemetry ack or the chunks, if the device subscribed to them. */
  const answersFor = (session: MqttSession, accepted: AcceptedMessage | undefined) => {
    const ack = accepted?.telemetryAck;
    const replies = accepted?.replies;
    if (!ack && !replies) return undefined;
    const out: OutgoingMessage[] = [];
    if (ack && session.subscriptions.has(ack.topic)) {
      out.push(ack);
      telemetryAcksPublished.inc();
    }
    for (const reply of replies ?? []) if (session.subscriptions.has(reply.topic)) out.push(reply);
    return out;
  };
  const sessions: MqttSessionServer = new MqttSessionServer({
    maxPacketBytes: config.mqttMaxPacketBytes,
    hooks: {
      authenticate,
      mayPublish(session, topic) {
        if (mayPublish(session.clientId, topic)) return true;
        metrics.inc("kestrel_gateway_acl_denials_total", { action: "publish" });
        log.warn({ deviceId: session.clientId, topic }, "publish outside the device's topics refused");
        return false;
      },
      /**
       * The PUBACK is written only once this resolves, so an acknowledged message is on disk; a
       * rejection closes the connection without it, and the device keeps the message and retries. A
       * telemetry ack, or the chunks a device asked for, go straight to the device's own connection
       * (no other client may subscribe to them), in the PUBACK's write. QoS 0: a lost telemetry ack
       * only delays the device, which resends and gets the next, cumulative one; a lost chunk is asked
       * for again.
       */
      publish(session, message) {
        return intake
          .accept(session.clientId, message.topic, message.payload)
          .then((accepted) => answersFor(session, accepted));
      },
      maySubscribe(session, topicFilter) {
        if (maySubscribe(session.clientId, topicFilter)) return true;
        metrics.inc("kestrel_gateway_acl_denials_total", { action: "subscribe" });
        log.warn(
          { deviceId: session.clientId, topic: topicFilter },
          "subscription outside the device's topics refused",
        );
        return false;
      },
      // Commands are fetched only for devices listening on their command topic; the rest stay queued in the cloud.
      subscribed(session, topicFilters) {
        if (topicFilters.includes(topics.command(session.clientId))) commands.deviceReady(session.clientId);
        if (topicFilters.includes(artifactTopics.offer(session.clientId))) artifacts.deviceReady(session.clientId);
      },
      unsubscribed(session, topicFilters) {
        if (topicFilters.includes(topics.command(session.clientId))) commands.deviceGone(session.clientId);
        if (topicFilters.includes(artifactTopics.offer(session.clientId))) artifacts.deviceGone(session.clientId);
      },
      closed(session, reason) {
        commands.deviceGone(session.clientId);
        artifacts.deviceGone(session.clientId);
        chunks.deviceGone(session.clientId);
        log.info({ deviceId: session.clientId, reason }, "device disconnected");
      },
      connectionError(session, error) {
        const reason = error instanceof MqttProtocolError ? error.reason : "internal_error";
        metrics.inc("kestrel_gateway_messages_rejected_total", { reason });
        log.warn(
          { deviceId: session.clientId || undefined, reason, err: error.message },
          "connection closed on an error",
        );
      },
    },
  });

  // Every device connection without Nagle's algorithm: each PUBACK is a small write the device waits
  // for, and held behind an unacknowledged one it would wait for the device's delayed ACK (~40 ms).
  const mqttServer = config.mqttPort === undefined ? undefined : createNetServer({ noDelay: true }, sessions.handle);
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
        sessions.handle,
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

  return {
    mqttPort,
    mqttTlsPort,
    get connectedClients() {
      return sessions.connectedClients;
    },
    publishCommand: async (deviceId, command) =>
      sessions.deliver(deviceId, topics.command(deviceId), JSON.stringify(command), 1),
    publishOffer: async (deviceId, offer) =>
      sessions.deliver(deviceId, artifactTopics.offer(deviceId), JSON.stringify(offer), 1),
    disconnectDevice: (deviceId) => sessions.disconnect(deviceId),
    async close() {
      // No new connections, then every session ends (wills queued) before the caller drains the queues.
      const listeners = Promise.all([mqttServer && close(mqttServer), tlsServer && close(tlsServer)]);
      await sessions.close();
      await listeners;
    },
  };
}
