// The broker's MQTT codec: framing of a connection's bytes however the reads cut them, the fast
// PUBLISH decoder against mqtt-packet's encoder, and our encoders against mqtt-packet's parser.

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import mqttPacket, { type Packet } from "mqtt-packet";
import {
  checkFlags,
  connectProtocol,
  decodePublish,
  encode,
  type Frame,
  MqttProtocolError,
  PacketFramer,
  PacketType,
  TopicMemo,
} from "../src/broker/mqtt-codec.ts";

const publish = (topic: string, payload: string | Buffer, qos: 0 | 1 | 2 = 1, messageId = 7) =>
  mqttPacket.generate({ cmd: "publish", topic, payload, qos, messageId, dup: false, retain: false });

/** The frames a framer hands on when fed these chunks, as copies (a frame may be a view of its chunk). */
function frames(chunks: Buffer[], maxPacketBytes = 1024): Frame[] {
  const out: Frame[] = [];
  const framer = new PacketFramer(maxPacketBytes, (frame) => out.push({ ...frame, packet: Buffer.from(frame.packet) }));
  for (const chunk of chunks) framer.push(chunk);
  return out;
}

/** What mqtt-packet's own parser makes of bytes we encoded. */
function parsed(bytes: Buffer): Packet[] {
  const parser = mqttPacket.parser({ protocolVersion: 4 });
  const packets: Packet[] = [];
  parser.on("packet", (packet) => packets.push(packet));
  parser.on("error", (error) => assert.fail(error));
  parser.parse(bytes);
  return packets;
}

function protocolError(reason: MqttProtocolError["reason"]) {
  return (error: unknown) => error instanceof MqttProtocolError && error.reason === reason;
}

describe("framing", () => {
  const stream = Buffer.concat([
    publish("d/a/telemetry", "x".repeat(300)),
    mqttPacket.generate({ cmd: "pingreq" }),
    publish("d/a/state", '{"v":1}'),
  ]);
  const expected = [
    { type: PacketType.publish, length: stream.length - 2 - publish("d/a/state", '{"v":1}').length },
    { type: PacketType.pingreq, length: 2 },
    { type: PacketType.publish, length: publish("d/a/state", '{"v":1}').length },
  ];
  const shapes = (found: Frame[]) => found.map((frame) => ({ type: frame.type, length: frame.packet.length }));

  test("several packets in one read come out whole and in order", () => {
    assert.deepEqual(shapes(frames([stream])), expected);
  });

  test("packets cut at every byte boundary, headers and remaining lengths included, come out the same", () => {
    for (let cut = 1; cut < stream.length; cut++) {
      const found = frames([stream.subarray(0, cut), stream.subarray(cut)]);
      assert.deepEqual(shapes(found), expected, `cut at ${cut}`);
      assert.deepEqual(Buffer.concat(found.map((frame) => frame.packet)), stream, `cut at ${cut}`);
    }
  });

  test("a packet read one byte at a time comes out whole", () => {
    const bytes = [...stream].map((byte) => Buffer.from([byte]));
    assert.deepEqual(Buffer.concat(frames(bytes).map((frame) => frame.packet)), stream);
  });

  test("a packet longer than the limit fails on its header, before its body arrives", () => {
    const big = publish("d/a/telemetry", "x".repeat(2000));
    assert.throws(() => frames([big.subarray(0, 3)], 1024), protocolError("oversize_packet"));
    assert.equal(frames([publish("d/a/telemetry", "x".repeat(1000))], 1024).length, 1);
  });

  test("a remaining length of more than four bytes is malformed", () => {
    assert.throws(
      () => frames([Buffer.from([0x30, 0xff, 0xff, 0xff, 0xff, 0x01])], 1 << 30),
      protocolError("malformed_packet"),
    );
  });
});

describe("decoding", () => {
  const frameOf = (bytes: Buffer): Frame => frames([bytes])[0] as Frame;

  test("a PUBLISH at each QoS decodes to mqtt-packet's topic, id and payload", () => {
    for (const qos of [0, 1, 2] as const) {
      const message = decodePublish(frameOf(publish("d/dev-1/telemetry", '{"v":1}', qos, 513)));
      assert.deepEqual(
        { ...message, payload: message.payload.toString() },
        { topic: "d/dev-1/telemetry", qos, retain: false, packetId: qos === 0 ? 0 : 513, payload: '{"v":1}' },
      );
    }
  });

  test("a PUBLISH with a wildcard, an empty topic, bad UTF-8, QoS 3 or packet id 0 is malformed", () => {
    const bad = [
      publish("d/+/telemetry", "x"),
      publish("", "x"),
      Buffer.from([0x30, 0x05, 0x00, 0x02, 0xc3, 0x28, 0x78]),
      Buffer.from([0x36, 0x06, 0x00, 0x01, 0x61, 0x00, 0x01, 0x78]),
      Buffer.from([0x32, 0x06, 0x00, 0x01, 0x61, 0x00, 0x00, 0x78]),
      Buffer.from([0x32, 0x04, 0x00, 0x09, 0x61, 0x62]),
    ];
    for (const bytes of bad) assert.throws(() => decodePublish(frameOf(bytes)), protocolError("malformed_packet"));
  });

  test("reserved flags, and packets only a server sends, are refused", () => {
    assert.throws(() => checkFlags(frameOf(Buffer.from([0xc1, 0x00]))), protocolError("malformed_packet"));
    assert.throws(() => checkFlags(frameOf(Buffer.from([0x80, 0x00]))), protocolError("malformed_packet"));
    assert.throws(() => checkFlags(frameOf(Buffer.from([0xd0, 0x00]))), protocolError("protocol_violation"));
    checkFlags(frameOf(Buffer.from([0xc0, 0x00])));
  });

  test("a CONNECT's protocol name and level are read before anything else", () => {
    const connect = (protocolId: "MQTT" | "MQIsdp", protocolVersion: 3 | 4 | 5) =>
      frameOf(mqttPacket.generate({ cmd: "connect", clientId: "dev-1", protocolId, protocolVersion }));
    assert.deepEqual(connectProtocol(connect("MQTT", 4)), { name: "MQTT", level: 4 });
    assert.deepEqual(connectProtocol(connect("MQIsdp", 3)), { name: "MQIsdp", level: 3 });
    assert.deepEqual(connectProtocol(connect("MQTT", 5)), { name: "MQTT", level: 5 });
  });
});

describe("encoding", () => {
  test("acknowledgements, CONNACK, SUBACK and PINGRESP are what mqtt-packet reads", () => {
    const bytes = Buffer.concat([
      encode.connack(4),
      encode.puback(0x1234),
      encode.pubrec(2),
      encode.pubcomp(2),
      encode.suback(9, [1, 0x80, 0]),
      encode.unsuback(10),
      encode.pingresp(),
    ]);
    assert.deepEqual(
      parsed(bytes).map(({ cmd, messageId, ...rest }) => ({
        cmd,
        messageId,
        ...("returnCode" in rest ? { returnCode: rest.returnCode } : {}),
        ...("granted" in rest ? { granted: rest.granted } : {}),
      })),
      [
        { cmd: "connack", messageId: undefined, returnCode: 4 },
        { cmd: "puback", messageId: 0x1234 },
        { cmd: "pubrec", messageId: 2 },
        { cmd: "pubcomp", messageId: 2 },
        { cmd: "suback", messageId: 9, granted: [1, 0x80, 0] },
        { cmd: "unsuback", messageId: 10 },
        { cmd: "pingresp", messageId: undefined },
      ],
    );
  });

  test("a PUBLISH round-trips at every length class of its remaining length", () => {
    for (const size of [0, 100, 200, 20_000, 3_000_000]) {
      const payload = Buffer.alloc(size, 0x61);
      for (const qos of [0, 1] as const) {
        const [packet] = parsed(
          encode.publish("d/dév-1/cmd", qos === 0 ? payload.toString() : payload, qos, qos ? 77 : 0),
        );
        assert.equal(packet?.cmd, "publish");
        if (packet?.cmd !== "publish") return;
        assert.equal(packet.topic, "d/dév-1/cmd");
        assert.equal(packet.qos, qos);
        assert.equal(packet.messageId, qos ? 77 : undefined);
        assert.equal(Buffer.from(packet.payload).length, size);
      }
    }
  });

  test("a reply is one buffer: the PUBACK or PUBREC, then each message, in that order", () => {
    const describe = (bytes: Buffer) =>
      parsed(bytes).map((p) => (p.cmd === "publish" ? `publish ${p.topic} ${p.payload}` : `${p.cmd} ${p.messageId}`));
    const messages = [
      { topic: "d/dev-1/telemetry/ack", payload: '{"v":1}' },
      { topic: "d/dév-1/artifact/chunk", payload: Buffer.alloc(300, 0x62) },
    ];
    assert.deepEqual(describe(encode.reply(1, 9, messages)), [
      "puback 9",
      'publish d/dev-1/telemetry/ack {"v":1}',
      `publish d/dév-1/artifact/chunk ${"b".repeat(300)}`,
    ]);
    assert.deepEqual(describe(encode.reply(2, 0x1234, messages.slice(0, 1))), [
      `pubrec ${0x1234}`,
      'publish d/dev-1/telemetry/ack {"v":1}',
    ]);
    assert.deepEqual(describe(encode.reply(0, 0, messages.slice(0, 1))), ['publish d/dev-1/telemetry/ack {"v":1}']);
    assert.deepEqual(describe(encode.reply(1, 7, [])), ["puback 7"]);
  });
});

describe("topic memo", () => {
  const frameOf = (bytes: Buffer): Frame => frames([bytes])[0] as Frame;

  test("a topic is the last one's string when its bytes are, and is decoded and checked when they differ", () => {
    const memo = new TopicMemo();
    const first = decodePublish(frameOf(publish("d/dev-1/telemetry", "a", 1, 1)), memo);
    const again = decodePublish(frameOf(publish("d/dev-1/telemetry", "b", 1, 2)), memo);
    assert.equal(again.topic, "d/dev-1/telemetry");
    assert.equal(again.payload.toString(), "b");
    const other = decodePublish(frameOf(publish("d/dev-1/state", "c", 1, 3)), memo);
    assert.equal(other.topic, "d/dev-1/state");
    // Same length, other bytes: decoded and checked, not taken from the memo.
    assert.equal(decodePublish(frameOf(publish("d/dev-2/telemetry", "d", 1, 4)), memo).topic, "d/dev-2/telemetry");
    assert.throws(
      () => decodePublish(frameOf(publish("d/dev-1/telemetr+", "e", 1, 5)), memo),
      protocolError("malformed_packet"),
    );
    assert.equal(first.topic, "d/dev-1/telemetry");
  });
});
