// The network side of the simulated Moddable `mqtt` Client: for each client the firmware creates, a
// real MQTT 3.1.1 connection (mqtt.js) to the host and port the firmware asked for, over TLS when
// the firmware passed securesocket (server verified against its CA, optional client certificate), held
// to what Moddable's TLS client can do (TLS 1.2, its suites, P-256, RSA client keys only).
// Connection events go back to the firmware as device events; publishes are forwarded as they are,
// except the one a "link-drop-after-publish" fault loses along with the connection.

import { createPrivateKey, type KeyObject, X509Certificate } from "node:crypto";
import { parseTelemetryAck, parseTopic } from "@kestrel/wire";
import { CHUNK_HEADER_BYTES, ChunkStatus, readChunkHeader } from "@kestrel/wire/artifacts";
import { DEVICE_TLS } from "@kestrel/wire/device-tls";
import mqtt, { type IClientOptions, type MqttClient } from "mqtt";
import type { FaultSet } from "./faults.ts";
import type { SimLogger } from "./logger.ts";

export type MqttEventSink = (id: number, data: Record<string, unknown>) => void;

/** Holds virtual time while the network works (see SimClock.hold); returns the release. */
export type ClockHold = () => () => void;

const noHold: ClockHold = () => () => undefined;

/** A telemetry batch published and not acknowledged yet: (boot, last seq), and its hold on the clock. */
interface AwaitedAck {
  boot: number;
  seq: number;
  release: () => void;
}

/** An artifact chunk request sent and not fully answered yet, and its hold on the clock. */
interface AwaitedChunks {
  end: number;
  release: () => void;
}

interface Connection {
  client: MqttClient;
  /** The firmware closed it: no further events for it. */
  closedByDevice: boolean;
  closeReported: boolean;
  /** The telemetry-ack topic once the firmware subscribed to it. */
  ackTopic: string | undefined;
  awaitingAck: AwaitedAck[];
  awaitingChunks: AwaitedChunks[];
}

/**
 * Lets virtual time move on once the chunks a request asked for have all arrived (or the gateway
 * refused it), so a download never sees its own request time out because the network took real time.
 */
function settleChunks(connection: Connection, message?: Buffer): void {
  const awaiting = connection.awaitingChunks;
  if (!message) {
    for (const request of awaiting.splice(0)) request.release();
    return;
  }
  const header = readChunkHeader(message);
  const request = awaiting[0];
  if (!header || !request) return;
  const end = header.offset + message.length - CHUNK_HEADER_BYTES;
  if (header.status !== ChunkStatus.ok || end >= Math.min(request.end, header.size)) {
    awaiting.shift();
    request.release();
  }
}

/** Lets virtual time move on again for every batch the ack (or undefined: the connection's end) settles. */
function settleAcks(connection: Connection, ack?: { boot: number; seq: number }): void {
  if (!ack) settleChunks(connection);
  const awaiting = connection.awaitingAck;
  let settled = 0;
  while (settled < awaiting.length) {
    const batch = awaiting[settled] as AwaitedAck;
    if (ack && (batch.boot > ack.boot || (batch.boot === ack.boot && batch.seq > ack.seq))) break;
    batch.release();
    settled++;
  }
  awaiting.splice(0, settled);
}

const CONNECT_TIMEOUT_MS = 10_000;

function decodePayload(value: unknown, what: string): Buffer {
  if (typeof value === "object" && value !== null) {
    if (typeof (value as { text?: unknown }).text === "string") return Buffer.from((value as { text: string }).text);
    if (Array.isArray((value as { bytes?: unknown }).bytes)) return Buffer.from((value as { bytes: number[] }).bytes);
  }
  throw new TypeError(`${what} must be a string or an ArrayBuffer`);
}

function derBytes(value: unknown, what: string): Buffer {
  if (!Array.isArray(value)) throw new TypeError(`${what} must be DER bytes`);
  return Buffer.from(value as number[]);
}

/**
 * securesocket's checks and limits, done by node:tls: the chain against the CA only (no system roots),
 * the server's subjectAltName against the host the firmware connects to (mqtt.js passes it as host),
 * and the ClientHello Moddable's client sends (DEVICE_TLS), so a server the device could not talk to
 * refuses the simulator too.
 */
function tlsOptions(tls: Record<string, unknown>): Partial<IClientOptions> {
  const options: Partial<IClientOptions> & Record<string, unknown> = {
    protocol: "mqtts",
    rejectUnauthorized: true,
    minVersion: DEVICE_TLS.version,
    maxVersion: DEVICE_TLS.version,
    ciphers: DEVICE_TLS.cipherSuites.map((suite) => suite.openssl).join(":"),
    ecdhCurve: DEVICE_TLS.groups.join(":"),
    sigalgs: DEVICE_TLS.signatureAlgorithms.join(":"),
  };
  if (tls.ca !== undefined) options.ca = new X509Certificate(derBytes(tls.ca, "ca")).toString();
  if (tls.cert !== undefined) {
    options.cert = new X509Certificate(derBytes(tls.cert, "client certificate")).toString();
    options.key = clientKey(tls).export({ format: "pem", type: "pkcs8" }).toString();
  }
  return options;
}

function clientKey(tls: Record<string, unknown>): KeyObject {
  return createPrivateKey({ key: derBytes(tls.key, "client key"), format: "der", type: "pkcs8" });
}

/** Why the device's TLS client would fail the handshake with this client key, if it would. */
function clientKeyRefusal(tls: Record<string, unknown>): string | undefined {
  if (tls.key === undefined) return undefined;
  const type = clientKey(tls).asymmetricKeyType ?? "unknown";
  if ((DEVICE_TLS.clientKeyTypes as readonly string[]).includes(type)) return undefined;
  return `Moddable's TLS client signs with RSA client keys only; its PKCS#8 parser throws "BER: not an integer" on this ${type} key and the handshake fails`;
}

function qosOf(value: unknown): 0 | 1 | 2 {
  if (value === 0 || value === 1 || value === 2) return value;
  throw new RangeError(`invalid quality ${String(value)}`);
}

export class MqttBridge {
  readonly #emit: MqttEventSink;
  readonly #logger: SimLogger;
  readonly #hold: ClockHold;
  readonly #faults: FaultSet | undefined;
  readonly #connections = new Map<number, Connection>();
  #nextId = 1;

  /**
   * With a hold, virtual time stands still while a connect is under way, and while a telemetry batch
   * awaits its ack (once the firmware subscribed to its ack topic), so the device sees the broker and
   * the gateway answer at once however long they take in real time.
   */
  constructor(emit: MqttEventSink, logger: SimLogger, hold: ClockHold = noHold, faults?: FaultSet) {
    this.#emit = emit;
    this.#logger = logger;
    this.#hold = hold;
    this.#faults = faults;
  }

  /** While set, every connection the firmware opens fails at once (a health-check test's broken image). */
  refuseConnections = false;

  /** Host calls behind the simulated Client. */
  handle(op: string, args: Record<string, unknown>): unknown {
    switch (op) {
      case "open":
        return this.#open(args);
      case "publish": {
        const connection = this.#connected(args);
        const { client } = connection;
        const topic = String(args.topic);
        const payload = decodePayload(args.payload, "data");
        const telemetry = parseTopic(topic)?.kind === "telemetry";
        if (telemetry && this.#faults?.takeLinkDropAfterPublish()) {
          this.#logger.info({ topic }, "simulated link drop: telemetry publish lost with the connection");
          client.end(true);
          return undefined;
        }
        // Not held until the PUBACK, which Moddable's client ignores; held until the telemetry ack,
        // which the firmware waits for.
        if (telemetry && connection.ackTopic !== undefined) this.#awaitAck(connection, payload);
        if (parseTopic(topic)?.kind === "artifact/get") this.#awaitChunks(connection, payload);
        client.publish(topic, payload, { qos: qosOf(args.qos), retain: args.retain === true }, (error) => {
          if (error) this.#logger.warn({ topic, err: error.message }, "simulated mqtt publish failed");
        });
        return undefined;
      }
      case "subscribe": {
        const connection = this.#connected(args);
        const topic = String(args.topic);
        if (parseTopic(topic)?.kind === "telemetry/ack") connection.ackTopic = topic;
        connection.client.subscribe(topic, { qos: 0 });
        return undefined;
      }
      case "unsubscribe":
        this.#connected(args).client.unsubscribe(String(args.topic));
        return undefined;
      case "close": {
        const connection = this.#connections.get(Number(args.id));
        if (connection) {
          connection.closedByDevice = true;
          settleAcks(connection);
          this.#connections.delete(Number(args.id));
          // Moddable sends DISCONNECT unless asked to close immediately.
          connection.client.end(args.immediate === true);
        }
        return undefined;
      }
      default:
        throw new Error(`unknown mqtt operation ${op}`);
    }
  }

  /** Power loss: every socket drops without DISCONNECT, so the broker publishes the wills. */
  powerOff(): void {
    for (const connection of this.#connections.values()) {
      connection.closedByDevice = true;
      settleAcks(connection);
      connection.client.end(true);
    }
    this.#connections.clear();
  }

  #open(args: Record<string, unknown>): number {
    const host = String(args.host);
    const port = Number(args.port);
    if (!Number.isInteger(port) || port < 1 || port > 65535) throw new RangeError(`invalid port ${String(args.port)}`);
    const timeout = Number(args.timeout) || 0;
    const options: IClientOptions = {
      host,
      port,
      protocol: "mqtt",
      protocolVersion: 4,
      clientId: String(args.id ?? ""),
      clean: true,
      keepalive: Math.ceil(timeout / 1000),
      // Moddable's client never reconnects on its own; the firmware does.
      reconnectPeriod: 0,
      connectTimeout: CONNECT_TIMEOUT_MS,
    };
    if (typeof args.tls === "object" && args.tls !== null)
      Object.assign(options, tlsOptions(args.tls as Record<string, unknown>));
    if (typeof args.user === "string") options.username = args.user;
    if (args.password !== undefined) options.password = decodePayload(args.password, "password");
    const will = args.will as { topic?: unknown; message?: unknown; retain?: unknown; qos?: unknown } | undefined;
    if (will)
      options.will = {
        topic: String(will.topic),
        payload: decodePayload(will.message, "will message"),
        qos: qosOf(will.qos),
        retain: will.retain === true,
      };
    const id = this.#nextId++;
    if (this.refuseConnections) {
      // The image under test cannot reach its gateway: every attempt fails as a refused connect would.
      setImmediate(() => this.#emit(id, { type: "close" }));
      return id;
    }
    const refusal =
      typeof args.tls === "object" && args.tls !== null
        ? clientKeyRefusal(args.tls as Record<string, unknown>)
        : undefined;
    if (refusal !== undefined) {
      // As on the device: the socket fails before CONNECT, and the client only sees the close.
      this.#logger.warn({ host, port, err: refusal }, "simulated securesocket: TLS handshake failed");
      setImmediate(() => this.#emit(id, { type: "close" }));
      return id;
    }
    const connection: Connection = {
      client: mqtt.connect(options),
      closedByDevice: false,
      closeReported: false,
      ackTopic: undefined,
      awaitingAck: [],
      awaitingChunks: [],
    };
    this.#connections.set(id, connection);
    const { client } = connection;
    const connecting = this.#hold();
    client.on("connect", () => {
      if (!connection.closedByDevice) this.#emit(id, { type: "ready" });
      connecting();
    });
    client.on("message", (topic, payload) => {
      if (connection.closedByDevice) return;
      const chunk = parseTopic(topic)?.kind === "artifact/chunk";
      if (chunk && this.#faults?.takeLinkDropAtChunk()) {
        this.#logger.info({ topic }, "simulated link drop before an artifact chunk");
        client.end(true);
        return;
      }
      this.#emit(id, { type: "message", topic, bytes: Array.from(payload) });
      if (chunk) settleChunks(connection, payload);
      if (topic !== connection.ackTopic) return;
      const ack = parseTelemetryAck(payload.toString("utf8"));
      if (ack.ok) settleAcks(connection, ack.value);
    });
    client.on("error", (error) => {
      this.#logger.warn({ host, port, err: error.message }, "simulated mqtt connection error");
    });
    client.on("close", () => {
      connecting();
      settleAcks(connection);
      if (connection.closedByDevice || connection.closeReported) return;
      connection.closeReported = true;
      this.#connections.delete(id);
      client.end(true);
      this.#emit(id, { type: "close" });
    });
    return id;
  }

  /** Holds virtual time until the batch's ack arrives or the connection ends. */
  #awaitAck(connection: Connection, payload: Buffer): void {
    const batch = JSON.parse(payload.toString("utf8")) as { boot: number; samples: Array<{ seq: number }> };
    const last = batch.samples.at(-1);
    if (last === undefined) return;
    connection.awaitingAck.push({ boot: batch.boot, seq: last.seq, release: this.#hold() });
  }

  /** Holds virtual time until the chunks asked for have arrived, or the connection ends. */
  #awaitChunks(connection: Connection, payload: Buffer): void {
    const request = JSON.parse(payload.toString("utf8")) as { offset: number; length: number };
    connection.awaitingChunks.push({ end: request.offset + request.length, release: this.#hold() });
  }

  #connected(args: Record<string, unknown>): Connection {
    const connection = this.#connections.get(Number(args.id));
    if (!connection?.client.connected) throw new Error("connection closed");
    return connection;
  }
}
