// The gateway's device-facing MQTT 3.1.1 server: one session per connection on a raw net or tls
// socket, read with `socket.on("data")` and answered with one write of one Buffer per reply. It
// keeps what MQTT itself requires (CONNECT first and once, keep-alive, session takeover by client
// id, wills, subscriptions, PUBACKs in the order of their PUBLISHes, QoS 2 inbound) and bounds
// what a connection may hold (packet size, publishes waiting for their ack, unsent bytes). Every
// decision about devices (who may connect, publish, subscribe, what a message means) is a hook.
// It replaced aedes, whose streams and generic routing cost twice the CPU a message (docs/benchmarks.md).

import type { Socket } from "node:net";
import type { IConnectPacket, ISubscribePacket, IUnsubscribePacket } from "mqtt-packet";
import {
  ConnackCode,
  checkFlags,
  connectProtocol,
  decodePacketId,
  decodePublish,
  decodeWithMqttPacket,
  encode,
  type Frame,
  type InboundPublish,
  MqttProtocolError,
  PacketFramer,
  PacketType,
  SUBSCRIPTION_FAILURE,
  TopicMemo,
} from "./mqtt-codec.ts";

export interface Will {
  topic: string;
  payload: Buffer;
}

/** What a CONNECT asks for, handed to the authenticate hook. */
export interface ConnectRequest {
  clientId: string;
  username: string | undefined;
  password: Buffer | undefined;
  keepaliveSeconds: number;
  will: Will | undefined;
}

/** A message for a client, written at QoS 0 in the same write as the acknowledgement it follows. */
export interface OutgoingMessage {
  topic: string;
  payload: Buffer | string;
}

/** Why a session ended, as the hooks and logs see it. */
export type CloseReason =
  | "disconnect"
  | "connection_lost"
  | "takeover"
  | "keepalive_timeout"
  | "connect_timeout"
  | "protocol_error"
  | "publish_refused"
  | "publish_failed"
  | "kicked"
  | "server_closing";

export interface SessionHooks {
  /** Decides a CONNECT: resolves with its CONNACK return code (ConnackCode.accepted admits it). */
  authenticate(request: ConnectRequest, socket: Socket): Promise<number>;
  /**
   * A PUBLISH outside what the client may publish closes its connection (MQTT 3.1.1 has no negative
   * PUBACK). Decided by the client id and the topic alone: a yes is remembered for the connection's
   * next publishes to the same topic.
   */
  mayPublish(session: MqttSession, topic: string): boolean;
  /**
   * A PUBLISH from the client, or its will (`will`) once its connection is lost. Resolves when the
   * message may be acknowledged, with the messages to write right after the acknowledgement; a
   * rejection closes the connection without acknowledging it, so the client sends it again later.
   */
  publish(session: MqttSession, message: InboundPublish, will: boolean): Promise<OutgoingMessage[] | undefined>;
  maySubscribe(session: MqttSession, topicFilter: string): boolean;
  subscribed(session: MqttSession, topicFilters: string[]): void;
  unsubscribed(session: MqttSession, topicFilters: string[]): void;
  /** A session that was admitted ended; its will, if any, has been published. */
  closed(session: MqttSession, reason: CloseReason): void;
  /** A connection closed for what it sent (MqttProtocolError), or for a failure of ours. */
  connectionError(session: MqttSession, error: Error): void;
}

export interface SessionServerOptions {
  hooks: SessionHooks;
  /** The longest packet a client may send; a longer one closes its connection. */
  maxPacketBytes: number;
  /** Bytes written but not yet taken by the client's TCP window before its connection stops being read. */
  maxBacklogBytes?: number;
  /**
   * Packets read but not yet answered (publishes waiting for their ack, and the replies queued behind
   * them) before the connection stops being read.
   */
  maxPendingReplies?: number;
  /** A connection whose CONNECT has not arrived whole this long after it opened is closed. */
  connectTimeoutMs?: number;
}

const DEFAULT_MAX_BACKLOG_BYTES = 1024 * 1024;
const DEFAULT_MAX_PENDING_REPLIES = 64;
const DEFAULT_CONNECT_TIMEOUT_MS = 30_000;
/** How long a closing connection may take to flush what it was sent before it is cut. */
const CLOSE_GRACE_MS = 5_000;

/** An acknowledgement (with what follows it) waiting for its turn: PUBACKs leave in PUBLISH order. */
interface Reply {
  bytes: Buffer | undefined;
  /** Set once the bytes are known, or the publish failed. */
  settled: boolean;
  /** The connection closes when this reply's turn comes, after those before it are written. */
  closeWith: CloseReason | undefined;
}

/** What a session needs of its server. */
interface SessionHost {
  readonly options: Required<SessionServerOptions>;
  admit(session: MqttSession, request: ConnectRequest): Promise<void>;
  forget(session: MqttSession, wasConnected: boolean): void;
}

/** One client connection, from its first byte to its close. */
export class MqttSession {
  clientId = "";
  /** Topic filters the client subscribed to (exact topics: the hooks allow no wildcards), with the QoS granted. */
  readonly subscriptions = new Map<string, 0 | 1>();
  private state: "awaiting_connect" | "authenticating" | "connected" | "closing" | "closed" = "awaiting_connect";
  private will: Will | undefined;
  private readonly framer: PacketFramer;
  private readonly hooks: SessionHooks;
  private readonly topics = new TopicMemo();
  /** The last topic mayPublish allowed (a device publishes to one topic mostly). */
  private allowedTopic: string | undefined;
  private lastHeard = Date.now();
  private timer: NodeJS.Timeout | undefined;
  /** Frames read after the CONNECT while it is being authenticated (at most the rest of that read). */
  private early: Frame[] = [];
  private readonly replies: Reply[] = [];
  /** QoS 2 packet ids whose PUBREC was queued and whose PUBREL has not come yet. */
  private readonly awaitingRelease = new Set<number>();
  private nextPacketId = 1;
  private paused = false;
  private closing: Promise<void> | undefined;
  private graceTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly host: SessionHost,
    readonly socket: Socket,
  ) {
    this.hooks = host.options.hooks;
    this.framer = new PacketFramer(host.options.maxPacketBytes, (frame) => this.onFrame(frame));
    socket.on("data", (chunk: Buffer) => this.receive(chunk));
    socket.on("drain", () => this.resumeIfRoom());
    socket.on("error", () => this.close("connection_lost"));
    socket.on("close", () => {
      clearTimeout(this.graceTimer);
      this.close("connection_lost");
    });
    // From the connection's start, not its last byte: trickling a CONNECT does not hold a connection open.
    this.timer = setTimeout(() => {
      if (this.state === "awaiting_connect") this.close("connect_timeout");
    }, host.options.connectTimeoutMs);
  }

  get connected(): boolean {
    return this.state === "connected";
  }

  /**
   * Publishes to the client if it subscribed to the topic, at the lower of `qos` and the QoS it was
   * granted. Throws when it did not subscribe, or when it is not reading what it was sent.
   */
  send(topic: string, payload: Buffer | string, qos: 0 | 1): void {
    const granted = this.state === "connected" ? this.subscriptions.get(topic) : undefined;
    if (granted === undefined) throw new Error(`${this.clientId} is not subscribed to ${topic}`);
    if (this.socket.writableLength >= this.host.options.maxBacklogBytes) {
      throw new Error(`${this.clientId} is not reading: ${this.socket.writableLength} bytes unsent`);
    }
    const sentQos = Math.min(qos, granted) as 0 | 1;
    // MQTT 3.1.1 resends a QoS 1 message only on a resumed session, which clean sessions never
    // have: nothing waits for the PUBACK (Moddable's client sends none), the id only has to be fresh.
    const packetId = sentQos === 1 ? this.takePacketId() : 0;
    this.socket.write(encode.publish(topic, payload, sentQos, packetId));
  }

  /** Ends the session; its will is published unless the client said DISCONNECT. Resolves once it was. */
  close(reason: CloseReason): Promise<void> {
    this.closing ??= this.shutdown(reason);
    return this.closing;
  }

  /** Admitted: CONNACK, then the frames that came with the CONNECT. */
  accept(keepaliveSeconds: number, will: Will | undefined): void {
    this.state = "connected";
    this.will = will;
    this.socket.write(encode.connack(ConnackCode.accepted));
    // MQTT 3.1.1, 3.1.2.10: one and a half keep-alive periods without a packet end the connection.
    this.watchKeepAlive(keepaliveSeconds * 1500);
    const early = this.early;
    this.early = [];
    for (const frame of early) if (!this.handle(frame)) return;
    this.resumeIfRoom();
  }

  /** Refuses the CONNECT with this return code, and closes. */
  refuse(returnCode: number): void {
    if (this.state === "closed") return;
    this.state = "closed";
    clearTimeout(this.timer);
    this.host.forget(this, false);
    this.socket.end(encode.connack(returnCode));
    // Read on (and ignore) what the client still sends: closing with unread bytes would reset the
    // connection, and the client could lose the CONNACK that says why it was refused.
    this.socket.resume();
    this.destroyLater();
  }

  get closed(): boolean {
    return this.state === "closed";
  }

  private receive(chunk: Buffer): void {
    this.lastHeard = Date.now();
    try {
      this.framer.push(chunk);
    } catch (error) {
      this.fail(error);
      return;
    }
    if (
      this.replies.length >= this.host.options.maxPendingReplies ||
      this.socket.writableLength >= this.host.options.maxBacklogBytes
    ) {
      this.paused = true;
      this.socket.pause();
    }
  }

  private onFrame(frame: Frame): void {
    if (this.state === "authenticating") this.early.push(frame);
    else if (this.state === "awaiting_connect") this.connect(frame);
    else if (this.state === "connected") this.dispatch(frame);
  }

  /** Handles a frame outside the framer's loop; false once the connection failed on it. */
  private handle(frame: Frame): boolean {
    try {
      this.onFrame(frame);
      return true;
    } catch (error) {
      this.fail(error);
      return false;
    }
  }

  private fail(error: unknown): void {
    const failure = error instanceof Error ? error : new Error(String(error));
    this.hooks.connectionError(this, failure);
    this.close("protocol_error");
  }

  private connect(frame: Frame): void {
    if (frame.type !== PacketType.connect) {
      throw new MqttProtocolError("protocol_violation", `packet type ${frame.type} before CONNECT`);
    }
    checkFlags(frame);
    const { name, level } = connectProtocol(frame);
    const known = (name === "MQTT" && level === 4) || (name === "MQIsdp" && level === 3);
    if (!known) {
      if (name !== "MQTT" && name !== "MQIsdp") {
        throw new MqttProtocolError("bad_protocol", `protocol name ${JSON.stringify(name)} is not MQTT`);
      }
      // MQTT 3.1.1, 3.1.2.2: an unsupported level is answered, then the connection closed.
      this.hooks.connectionError(this, new MqttProtocolError("bad_protocol", `protocol level ${level} unsupported`));
      this.refuse(ConnackCode.unacceptableProtocolVersion);
      return;
    }
    const packet = decodeWithMqttPacket<IConnectPacket>(frame, "connect");
    this.clientId = packet.clientId;
    this.state = "authenticating";
    // What else this read brought waits in `early`; nothing more is read until the verdict.
    this.paused = true;
    this.socket.pause();
    const will = packet.will
      ? { topic: packet.will.topic, payload: Buffer.from(packet.will.payload as Buffer) }
      : undefined;
    this.host
      .admit(this, {
        clientId: packet.clientId,
        username: packet.username,
        password: packet.password,
        keepaliveSeconds: packet.keepalive ?? 0,
        will,
      })
      .catch((error: unknown) => this.fail(error));
  }

  private dispatch(frame: Frame): void {
    checkFlags(frame);
    switch (frame.type) {
      case PacketType.publish:
        this.receivePublish(decodePublish(frame, this.topics));
        break;
      case PacketType.puback:
        // The client's ack of a QoS 1 message we sent: nothing waits for it (see send).
        decodePacketId(frame);
        break;
      case PacketType.pubrel: {
        const packetId = decodePacketId(frame);
        this.awaitingRelease.delete(packetId);
        this.reply(encode.pubcomp(packetId));
        break;
      }
      case PacketType.subscribe:
        this.subscribe(decodeWithMqttPacket<ISubscribePacket>(frame, "subscribe"));
        break;
      case PacketType.unsubscribe:
        this.unsubscribe(decodeWithMqttPacket<IUnsubscribePacket>(frame, "unsubscribe"));
        break;
      case PacketType.pingreq:
        this.reply(encode.pingresp());
        break;
      case PacketType.disconnect:
        this.close("disconnect");
        break;
      case PacketType.connect:
        throw new MqttProtocolError("protocol_violation", "second CONNECT on a connection");
      default:
        throw new MqttProtocolError("protocol_violation", `packet type ${frame.type} is not sent to a server`);
    }
  }

  private receivePublish(message: InboundPublish): void {
    const { qos, packetId } = message;
    // A QoS 2 PUBLISH sent again before its PUBREL was already taken: answered, not delivered twice.
    if (qos === 2 && this.awaitingRelease.has(packetId)) {
      this.reply(encode.pubrec(packetId));
      return;
    }
    if (message.topic !== this.allowedTopic && !this.hooks.mayPublish(this, message.topic)) {
      // Stop reading; what came before is still acknowledged, in order, before the connection closes.
      this.state = "closing";
      this.replies.push({ bytes: undefined, settled: true, closeWith: "publish_refused" });
      this.flush();
      return;
    }
    this.allowedTopic = message.topic;
    if (qos === 2) this.awaitingRelease.add(packetId);
    const reply: Reply = { bytes: undefined, settled: false, closeWith: undefined };
    this.replies.push(reply);
    this.hooks.publish(this, message, false).then(
      (messages) => {
        // The acknowledgement and the messages after it: one Buffer, one write.
        reply.bytes = qos > 0 || messages?.length ? encode.reply(qos, packetId, messages ?? []) : undefined;
        this.settle(reply);
      },
      () => {
        reply.closeWith = "publish_failed";
        this.settle(reply);
      },
    );
  }

  private settle(reply: Reply): void {
    reply.settled = true;
    this.flush();
  }

  private subscribe(packet: ISubscribePacket): void {
    const accepted: string[] = [];
    const granted = packet.subscriptions.map(({ topic, qos }) => {
      if (!this.hooks.maySubscribe(this, topic)) return SUBSCRIPTION_FAILURE;
      const grantedQos = Math.min(qos, 1) as 0 | 1;
      this.subscriptions.set(topic, grantedQos);
      accepted.push(topic);
      return grantedQos;
    });
    this.reply(encode.suback(packet.messageId ?? 0, granted));
    if (accepted.length > 0) this.hooks.subscribed(this, accepted);
  }

  private unsubscribe(packet: IUnsubscribePacket): void {
    const removed = packet.unsubscriptions.filter((topic) => this.subscriptions.delete(topic));
    this.reply(encode.unsuback(packet.messageId ?? 0));
    if (removed.length > 0) this.hooks.unsubscribed(this, removed);
  }

  /** A reply known now: written at once, or after the acknowledgements still being waited for. */
  private reply(bytes: Buffer): void {
    if (this.replies.length === 0) {
      this.socket.write(bytes);
      return;
    }
    this.replies.push({ bytes, settled: true, closeWith: undefined });
  }

  /** Writes the settled replies at the head of the queue, all in one write. */
  private flush(): void {
    const ready: Buffer[] = [];
    let closeWith: CloseReason | undefined;
    while (this.replies.length > 0 && (this.replies[0] as Reply).settled) {
      const reply = this.replies.shift() as Reply;
      if (reply.closeWith) {
        closeWith = reply.closeWith;
        break;
      }
      if (reply.bytes) ready.push(reply.bytes);
    }
    if (this.state === "closed") return;
    if (ready.length > 0) this.socket.write(ready.length === 1 ? (ready[0] as Buffer) : Buffer.concat(ready));
    if (closeWith) this.close(closeWith);
    else this.resumeIfRoom();
  }

  private resumeIfRoom(): void {
    if (
      this.paused &&
      this.state === "connected" &&
      this.replies.length < this.host.options.maxPendingReplies &&
      this.socket.writableLength < this.host.options.maxBacklogBytes
    ) {
      this.paused = false;
      this.socket.resume();
    }
  }

  /** Closes the connection once `limitMs` pass without a byte from the client (0: never). */
  private watchKeepAlive(limitMs: number): void {
    clearTimeout(this.timer);
    if (limitMs <= 0) return;
    const check = () => {
      const idle = Date.now() - this.lastHeard;
      if (idle >= limitMs) this.close("keepalive_timeout");
      else this.timer = setTimeout(check, limitMs - idle);
    };
    this.timer = setTimeout(check, limitMs);
  }

  private takePacketId(): number {
    const id = this.nextPacketId;
    this.nextPacketId = id === 0xffff ? 1 : id + 1;
    return id;
  }

  private async shutdown(reason: CloseReason): Promise<void> {
    const wasConnected = this.state === "connected" || this.state === "closing";
    this.state = "closed";
    clearTimeout(this.timer);
    this.host.forget(this, wasConnected);
    // What was written (earlier PUBACKs) still leaves; the socket is cut if the client does not read it.
    this.socket.destroySoon();
    this.destroyLater();
    if (!wasConnected) return;
    const will = reason === "disconnect" ? undefined : this.will;
    if (will) {
      const message: InboundPublish = { topic: will.topic, payload: will.payload, qos: 0, retain: false, packetId: 0 };
      // A will that cannot be queued was counted and logged by the hook; the session ends all the same.
      await this.hooks.publish(this, message, true).catch(() => undefined);
    }
    this.hooks.closed(this, reason);
  }

  private destroyLater(): void {
    this.graceTimer = setTimeout(() => this.socket.destroy(), CLOSE_GRACE_MS).unref();
  }
}

/** The sessions of every connection of one process, by client id once admitted. */
export class MqttSessionServer implements SessionHost {
  readonly options: Required<SessionServerOptions>;
  private readonly live = new Set<MqttSession>();
  private readonly byClientId = new Map<string, MqttSession>();
  private connectedCount = 0;
  private stopping = false;

  constructor(options: SessionServerOptions) {
    this.options = {
      maxBacklogBytes: DEFAULT_MAX_BACKLOG_BYTES,
      maxPendingReplies: DEFAULT_MAX_PENDING_REPLIES,
      connectTimeoutMs: DEFAULT_CONNECT_TIMEOUT_MS,
      ...options,
    };
  }

  /** The connection listener of a net or tls server (a tls server's secure connections). */
  readonly handle = (socket: Socket): void => {
    if (this.stopping) {
      socket.destroy();
      return;
    }
    this.live.add(new MqttSession(this, socket));
  };

  get connectedClients(): number {
    return this.connectedCount;
  }

  session(clientId: string): MqttSession | undefined {
    const session = this.byClientId.get(clientId);
    return session?.connected ? session : undefined;
  }

  /** Publishes to a connected client subscribed to the topic; throws otherwise (see MqttSession.send). */
  deliver(clientId: string, topic: string, payload: Buffer | string, qos: 0 | 1): void {
    const session = this.session(clientId);
    if (!session) throw new Error(`${clientId} is not connected`);
    session.send(topic, payload, qos);
  }

  /** Closes the client's connection, if it has one here; resolves once its will was published. */
  disconnect(clientId: string): Promise<void> {
    return this.byClientId.get(clientId)?.close("kicked") ?? Promise.resolve();
  }

  /** Refuses new connections and closes every session (wills published). */
  async close(): Promise<void> {
    this.stopping = true;
    await Promise.all([...this.live].map((session) => session.close("server_closing")));
  }

  async admit(session: MqttSession, request: ConnectRequest): Promise<void> {
    const code = await this.options.hooks.authenticate(request, session.socket);
    if (session.closed) return;
    if (this.stopping) return session.refuse(ConnackCode.serverUnavailable);
    if (code !== ConnackCode.accepted) return session.refuse(code);
    // Takeover (MQTT 3.1.1, 3.1.4-2): the client id's earlier connection closes first, its will published.
    const previous = this.byClientId.get(request.clientId);
    this.byClientId.set(request.clientId, session);
    if (previous) await previous.close("takeover");
    // Closed meanwhile, or itself taken over by a third connection of the same id.
    if (session.closed || this.byClientId.get(request.clientId) !== session) return;
    this.connectedCount++;
    session.accept(request.keepaliveSeconds, request.will);
  }

  forget(session: MqttSession, wasConnected: boolean): void {
    this.live.delete(session);
    if (this.byClientId.get(session.clientId) === session) this.byClientId.delete(session.clientId);
    if (wasConnected) this.connectedCount--;
  }
}
