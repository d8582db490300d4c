// MQTT 3.1.1 packets as the device-facing broker reads and writes them: framing of a connection's
// bytes into whole packets (bounded in size), hand-written decoders for what devices send on every
// message (PUBLISH, PUBACK, PINGREQ), mqtt-packet's parser for the rest (CONNECT, SUBSCRIBE,
// UNSUBSCRIBE), and encoders that each return one Buffer, so a reply is one socket write.

import { isUtf8 } from "node:buffer";
import mqttPacket, {
  type IConnectPacket,
  type ISubscribePacket,
  type IUnsubscribePacket,
  type Packet,
} from "mqtt-packet";
import { writeBytes, writeString } from "../bytes.ts";

export const PacketType = {
  connect: 1,
  connack: 2,
  publish: 3,
  puback: 4,
  pubrec: 5,
  pubrel: 6,
  pubcomp: 7,
  subscribe: 8,
  suback: 9,
  unsubscribe: 10,
  unsuback: 11,
  pingreq: 12,
  pingresp: 13,
  disconnect: 14,
} as const;

/** The fixed header's flag bits every packet but PUBLISH must carry (MQTT 3.1.1, 2.2.2). */
const REQUIRED_FLAGS: Record<number, number> = {
  [PacketType.connect]: 0,
  [PacketType.puback]: 0,
  [PacketType.pubrec]: 0,
  [PacketType.pubrel]: 2,
  [PacketType.pubcomp]: 0,
  [PacketType.subscribe]: 2,
  [PacketType.unsubscribe]: 2,
  [PacketType.pingreq]: 0,
  [PacketType.disconnect]: 0,
};

/** CONNACK return codes (MQTT 3.1.1, 3.2.2.3). */
export const ConnackCode = {
  accepted: 0,
  unacceptableProtocolVersion: 1,
  identifierRejected: 2,
  serverUnavailable: 3,
  badUsernameOrPassword: 4,
  notAuthorized: 5,
} as const;

/** A SUBACK return code: the subscription was refused. */
export const SUBSCRIPTION_FAILURE = 0x80;

/** Bytes that break the protocol: the connection is closed, and the reason counted. */
export class MqttProtocolError extends Error {
  constructor(
    readonly reason: "oversize_packet" | "malformed_packet" | "bad_protocol" | "protocol_violation",
    message: string,
  ) {
    super(message);
  }
}

/** A whole packet: its bytes (fixed header included) and where the variable header starts. */
export interface Frame {
  type: number;
  flags: number;
  packet: Buffer;
  bodyStart: number;
}

/** The longest fixed header: one byte of type and flags, four of remaining length. */
const MAX_FIXED_HEADER = 5;

/**
 * Splits a connection's bytes into packets. A packet inside one read is handed on as a view of it
 * (no copy); one spread over reads is gathered into a buffer of exactly its size, allocated once
 * its length is known, so a peer trickling bytes costs no repeated copying. A packet longer than
 * maxPacketBytes fails before anything of it is buffered.
 */
export class PacketFramer {
  /** Fixed-header bytes of the next packet seen so far, when a read ended inside the header. */
  private header: Buffer | undefined;
  /** The packet being gathered across reads, and how much of it has arrived. */
  private partial: Buffer | undefined;
  private filled = 0;
  private bodyStart = 0;

  constructor(
    private readonly maxPacketBytes: number,
    private readonly onFrame: (frame: Frame) => void,
  ) {}

  /** Throws MqttProtocolError; the frames before the bad one have been handed on. */
  push(chunk: Buffer): void {
    let at = 0;
    if (this.partial) at = this.fill(chunk, 0);
    else if (this.header) at = this.resumeHeader(chunk);
    while (at < chunk.length) {
      const header = readFixedHeader(chunk, at, this.maxPacketBytes);
      if (header === undefined) {
        this.header = Buffer.from(chunk.subarray(at));
        return;
      }
      const end = at + header.headerBytes + header.remaining;
      if (end <= chunk.length) {
        const packet = chunk.subarray(at, end);
        this.onFrame(frameOf(packet, header.headerBytes));
        at = end;
      } else {
        this.begin(header.headerBytes, header.remaining);
        at = this.fill(chunk, at);
      }
    }
  }

  /** A read ended inside a fixed header: completes it from the next read's first bytes. */
  private resumeHeader(chunk: Buffer): number {
    const stashed = this.header as Buffer;
    const joined = Buffer.concat([stashed, chunk.subarray(0, MAX_FIXED_HEADER - stashed.length)]);
    const header = readFixedHeader(joined, 0, this.maxPacketBytes);
    if (header === undefined) {
      this.header = joined;
      return chunk.length;
    }
    this.header = undefined;
    this.begin(header.headerBytes, header.remaining);
    this.partial?.set(joined.subarray(0, header.headerBytes));
    this.filled = header.headerBytes;
    return this.fill(chunk, header.headerBytes - stashed.length);
  }

  private begin(headerBytes: number, remaining: number): void {
    this.partial = Buffer.allocUnsafe(headerBytes + remaining);
    this.filled = 0;
    this.bodyStart = headerBytes;
  }

  /** Copies what it can of chunk (from `at`) into the packet being gathered; returns the next offset. */
  private fill(chunk: Buffer, at: number): number {
    const packet = this.partial as Buffer;
    const take = Math.min(packet.length - this.filled, chunk.length - at);
    chunk.copy(packet, this.filled, at, at + take);
    this.filled += take;
    if (this.filled === packet.length) {
      this.partial = undefined;
      this.onFrame(frameOf(packet, this.bodyStart));
    }
    return at + take;
  }
}

function frameOf(packet: Buffer, bodyStart: number): Frame {
  const first = packet[0] as number;
  return { type: first >> 4, flags: first & 0x0f, packet, bodyStart };
}

/** The fixed header at `at`, or undefined when the bytes end inside it. */
function readFixedHeader(
  bytes: Buffer,
  at: number,
  maxPacketBytes: number,
): { headerBytes: number; remaining: number } | undefined {
  let remaining = 0;
  for (let i = 1; i < MAX_FIXED_HEADER; i++) {
    if (at + i >= bytes.length) return undefined;
    const byte = bytes[at + i] as number;
    remaining += (byte & 0x7f) * 128 ** (i - 1);
    if ((byte & 0x80) === 0) {
      if (i + 1 + remaining > maxPacketBytes) {
        throw new MqttProtocolError(
          "oversize_packet",
          `packet of ${i + 1 + remaining} bytes, more than ${maxPacketBytes} allowed`,
        );
      }
      return { headerBytes: i + 1, remaining };
    }
  }
  throw new MqttProtocolError("malformed_packet", "remaining length longer than four bytes");
}

/** Refuses reserved flag bits (MQTT-2.2.2-2: the connection must be closed). */
export function checkFlags(frame: Frame): void {
  const required = REQUIRED_FLAGS[frame.type];
  if (frame.type !== PacketType.publish && required === undefined) {
    throw new MqttProtocolError("protocol_violation", `packet type ${frame.type} is not sent to a server`);
  }
  if (required !== undefined && frame.flags !== required) {
    throw new MqttProtocolError("malformed_packet", `packet type ${frame.type} with reserved flags ${frame.flags}`);
  }
}

export interface InboundPublish {
  topic: string;
  qos: 0 | 1 | 2;
  retain: boolean;
  /** 0 for QoS 0. */
  packetId: number;
  /** A view of the received bytes: copy it to keep it past the handler. */
  payload: Buffer;
}

/**
 * A connection's last PUBLISH topic. A device publishes to the same few topics, so a topic whose
 * bytes are the last one's is taken as that string, already checked, instead of being decoded and
 * checked again (and the hooks get the same string, whose hash V8 keeps).
 */
export class TopicMemo {
  private bytes: Buffer | undefined;
  private topic = "";

  /** The topic in packet[start, end), checked: not empty, no wildcard or null, UTF-8. */
  read(packet: Buffer, start: number, end: number): string {
    if (this.matches(packet, start, end)) return this.topic;
    const topic = decodeTopic(packet, start, end);
    this.bytes = Buffer.from(packet.subarray(start, end));
    this.topic = topic;
    return topic;
  }

  /** Byte by byte: a topic is a few dozen bytes, less than Buffer.compare's checks of its arguments cost. */
  private matches(packet: Buffer, start: number, end: number): boolean {
    const last = this.bytes;
    if (!last || last.length !== end - start) return false;
    for (let i = 0; i < last.length; i++) if (last[i] !== packet[start + i]) return false;
    return true;
  }
}

function decodeTopic(packet: Buffer, start: number, end: number): string {
  const topicBytes = packet.subarray(start, end);
  const topic = topicBytes.toString("utf8");
  if (topic.length === 0 || /[+#]/.test(topic) || topic.includes("\u0000") || !isUtf8(topicBytes)) {
    throw new MqttProtocolError("malformed_packet", "PUBLISH topic empty, with a wildcard or a null, or not UTF-8");
  }
  return topic;
}

export function decodePublish({ flags, packet, bodyStart }: Frame, topics?: TopicMemo): InboundPublish {
  const qos = (flags >> 1) & 3;
  if (qos === 3) throw new MqttProtocolError("malformed_packet", "PUBLISH with both QoS bits set");
  const topicEnd = bodyStart + 2 + readLength(packet, bodyStart);
  const payloadStart = topicEnd + (qos > 0 ? 2 : 0);
  if (payloadStart > packet.length) throw new MqttProtocolError("malformed_packet", "PUBLISH shorter than its header");
  const topic = topics ? topics.read(packet, bodyStart + 2, topicEnd) : decodeTopic(packet, bodyStart + 2, topicEnd);
  const packetId = qos > 0 ? readLength(packet, topicEnd) : 0;
  if (qos > 0 && packetId === 0) throw new MqttProtocolError("malformed_packet", "PUBLISH with packet id 0");
  return { topic, qos: qos as 0 | 1 | 2, retain: (flags & 1) === 1, packetId, payload: packet.subarray(payloadStart) };
}

/** The packet id of a PUBACK, PUBREL (or another two-byte acknowledgement). */
export function decodePacketId({ packet, bodyStart }: Frame): number {
  if (packet.length - bodyStart !== 2) throw new MqttProtocolError("malformed_packet", "acknowledgement not 2 bytes");
  return readLength(packet, bodyStart);
}

function readLength(packet: Buffer, at: number): number {
  if (at + 2 > packet.length) throw new MqttProtocolError("malformed_packet", "packet ends inside a field");
  return ((packet[at] as number) << 8) | (packet[at + 1] as number);
}

/** The protocol a CONNECT names, read before its flags: a wrong level is answered, a wrong name is not. */
export function connectProtocol({ packet, bodyStart }: Frame): { name: string; level: number } {
  const nameEnd = bodyStart + 2 + readLength(packet, bodyStart);
  if (nameEnd >= packet.length) throw new MqttProtocolError("malformed_packet", "CONNECT ends inside its header");
  return { name: packet.toString("latin1", bodyStart + 2, nameEnd), level: packet[nameEnd] as number };
}

type ParsedPacket = IConnectPacket | ISubscribePacket | IUnsubscribePacket;

/** CONNECT, SUBSCRIBE and UNSUBSCRIBE, whole, through mqtt-packet's parser (validation of every field). */
export function decodeWithMqttPacket<T extends ParsedPacket>(frame: Frame, cmd: T["cmd"]): T {
  const parser = mqttPacket.parser({ protocolVersion: 4 });
  let parsed: Packet | undefined;
  let failure: Error | undefined;
  parser.on("packet", (packet) => {
    parsed = packet;
  });
  parser.on("error", (error: Error) => {
    failure = error;
  });
  parser.parse(frame.packet);
  if (failure || parsed?.cmd !== cmd) {
    throw new MqttProtocolError("malformed_packet", `bad ${cmd.toUpperCase()}: ${failure?.message ?? "not parsed"}`);
  }
  return parsed as T;
}

function acknowledgement(type: number, flags: number, packetId: number): Buffer {
  return Buffer.from([(type << 4) | flags, 2, packetId >> 8, packetId & 0xff]);
}

export const encode = {
  connack: (returnCode: number, sessionPresent = false) =>
    Buffer.from([PacketType.connack << 4, 2, sessionPresent ? 1 : 0, returnCode]),
  puback: (packetId: number) => acknowledgement(PacketType.puback, 0, packetId),
  pubrec: (packetId: number) => acknowledgement(PacketType.pubrec, 0, packetId),
  pubcomp: (packetId: number) => acknowledgement(PacketType.pubcomp, 0, packetId),
  unsuback: (packetId: number) => acknowledgement(PacketType.unsuback, 0, packetId),
  pingresp: () => Buffer.from([PacketType.pingresp << 4, 0]),
  suback(packetId: number, granted: number[]): Buffer {
    const out = Buffer.allocUnsafe(varIntBytes(2 + granted.length) + 3 + granted.length);
    out[0] = PacketType.suback << 4;
    let at = writeVarInt(out, 1, 2 + granted.length);
    out.writeUInt16BE(packetId, at);
    at += 2;
    for (const code of granted) out[at++] = code;
    return out;
  },
  /** A PUBLISH to a device. */
  publish(topic: string, payload: Buffer | string, qos: 0 | 1, packetId = 0): Buffer {
    const out = Buffer.allocUnsafe(publishBytes(topic, payload, qos));
    writePublish(out, 0, topic, payload, qos, packetId);
    return out;
  },
  /**
   * The acknowledgement of a publish (PUBACK for QoS 1, PUBREC for QoS 2, none for QoS 0) and the
   * QoS 0 messages that follow it, in one Buffer: one allocation, one write.
   */
  reply(qos: 0 | 1 | 2, packetId: number, messages: readonly { topic: string; payload: Buffer | string }[]): Buffer {
    let bytes = qos > 0 ? 4 : 0;
    for (const message of messages) bytes += publishBytes(message.topic, message.payload, 0);
    const out = Buffer.allocUnsafe(bytes);
    let at = 0;
    if (qos > 0) {
      out[0] = (qos === 1 ? PacketType.puback : PacketType.pubrec) << 4;
      out[1] = 2;
      out.writeUInt16BE(packetId, 2);
      at = 4;
    }
    for (const message of messages) at = writePublish(out, at, message.topic, message.payload, 0, 0);
    return out;
  },
};

function publishRemaining(topicBytes: number, payloadBytes: number, qos: 0 | 1): number {
  return 2 + topicBytes + (qos > 0 ? 2 : 0) + payloadBytes;
}

function payloadLength(payload: Buffer | string): number {
  return typeof payload === "string" ? Buffer.byteLength(payload) : payload.length;
}

function publishBytes(topic: string, payload: Buffer | string, qos: 0 | 1): number {
  const remaining = publishRemaining(Buffer.byteLength(topic), payloadLength(payload), qos);
  return 1 + varIntBytes(remaining) + remaining;
}

/** Writes a PUBLISH at `start`; answers where it ends. */
function writePublish(
  out: Buffer,
  start: number,
  topic: string,
  payload: Buffer | string,
  qos: 0 | 1,
  packetId: number,
): number {
  const topicBytes = Buffer.byteLength(topic);
  const payloadBytes = payloadLength(payload);
  out[start] = (PacketType.publish << 4) | (qos << 1);
  let at = writeVarInt(out, start + 1, publishRemaining(topicBytes, payloadBytes, qos));
  out.writeUInt16BE(topicBytes, at);
  at = writeString(out, at + 2, topic, topicBytes);
  if (qos > 0) {
    out.writeUInt16BE(packetId, at);
    at += 2;
  }
  return typeof payload === "string" ? writeString(out, at, payload, payloadBytes) : writeBytes(out, at, payload);
}

function varIntBytes(value: number): number {
  return value < 128 ? 1 : value < 16_384 ? 2 : value < 2_097_152 ? 3 : 4;
}

function writeVarInt(out: Buffer, at: number, value: number): number {
  let rest = value;
  let next = at;
  do {
    let byte = rest % 128;
    rest = Math.floor(rest / 128);
    if (rest > 0) byte |= 0x80;
    out[next++] = byte;
  } while (rest > 0);
  return next;
}
