// The gateway's MQTT session layer as a device sees it on the wire: raw bytes however TCP cuts them,
// packets pipelined behind a CONNECT, PUBACK order, protocol errors (each closes the connection and
// is counted), keep-alive, takeover, QoS 2; then the session server on its own for its bounds.

import assert from "node:assert/strict";
import { once } from "node:events";
import { connect as connectTcp, createServer, type Server, type Socket } from "node:net";
import { after, before, describe, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { connectAsync, type MqttClient } from "mqtt";
import mqttPacket, { type Packet } from "mqtt-packet";
import { ConnackCode, type InboundPublish } from "../src/broker/mqtt-codec.ts";
import { MqttSessionServer, type SessionHooks } from "../src/broker/session-server.ts";
import type { Gateway } from "../src/gateway.ts";
import { listen } from "../src/servers.ts";
import { type CloudPeer, startCloudPeer, startGatewayFor } from "./cloud-peer.ts";
import { until } from "./until.ts";

/** A device speaking raw MQTT: what it writes is exactly what the test says, what it reads is parsed by mqtt-packet. */
class RawClient {
  readonly received: Packet[] = [];
  closed = false;
  private readonly parser = mqttPacket.parser({ protocolVersion: 4 });

  private constructor(readonly socket: Socket) {
    this.parser.on("packet", (packet) => this.received.push(packet));
    socket.on("data", (chunk) => this.parser.parse(chunk));
    socket.on("close", () => {
      this.closed = true;
    });
    socket.on("error", () => undefined);
  }

  static async open(port: number): Promise<RawClient> {
    const socket = connectTcp({ port, host: "127.0.0.1", noDelay: true });
    await once(socket, "connect");
    return new RawClient(socket);
  }

  write(...packets: Array<Packet | Buffer>): void {
    this.socket.write(Buffer.concat(packets.map((p) => (Buffer.isBuffer(p) ? p : mqttPacket.generate(p)))));
  }

  /** Resolves once `count` packets arrived in all. */
  packets(count: number, what: string): Promise<Packet[]> {
    return until(() => this.received.length >= count && this.received.slice(0, count), what);
  }

  whenClosed(what: string, timeoutMs?: number): Promise<true> {
    return until(() => this.closed, what, timeoutMs);
  }
}

const connectPacket = (clientId: string, token: string, extra: Partial<mqttPacket.IConnectPacket> = {}): Packet => ({
  cmd: "connect",
  clientId,
  username: clientId,
  password: Buffer.from(token),
  keepalive: 60,
  clean: true,
  protocolId: "MQTT",
  protocolVersion: 4,
  ...extra,
});

const batch = (seq: number) =>
  JSON.stringify({ v: 1, boot: 3, samples: [{ seq, ts: 1_764_000_000_000 + seq, m: { temperature: 20 } }] });

const publishPacket = (topic: string, payload: string, messageId: number, qos: 0 | 1 | 2 = 1): Packet => ({
  cmd: "publish",
  topic,
  payload,
  qos,
  messageId,
  dup: false,
  retain: false,
});

/** The last will the firmware leaves: its state, offline. */
const offlineWill = (deviceId: string) => ({
  topic: `d/${deviceId}/state`,
  payload: Buffer.from('{"v":1,"online":false}'),
  qos: 1 as const,
  retain: true,
});

const DEVICES = Object.fromEntries(Array.from({ length: 12 }, (_, i) => [`ss-${i}`, `token-ss-${i}-secret`]));
const token = (id: string) => DEVICES[id] as string;
const MAX_PACKET_BYTES = 4096;

describe("the gateway's MQTT sessions on the wire", () => {
  let cloud: CloudPeer;
  let gateway: Gateway;
  const clients: Array<RawClient | MqttClient> = [];
  const raw = async () => {
    const client = await RawClient.open(gateway.mqttPort ?? 0);
    clients.push(client);
    return client;
  };
  const rejected = (reason: string) => gateway.metrics.value("kestrel_gateway_messages_rejected_total", { reason });
  const samplesOf = (deviceId: string) =>
    cloud.ingests.flatMap((r) => r.telemetry.filter((t) => t.deviceId === deviceId).flatMap((t) => t.batch.samples));
  const statesOf = (deviceId: string) => cloud.ingests.flatMap((r) => r.states.filter((s) => s.deviceId === deviceId));

  before(async () => {
    cloud = await startCloudPeer(DEVICES);
    gateway = await startGatewayFor(cloud, { MQTT_MAX_PACKET_BYTES: String(MAX_PACKET_BYTES) });
  });

  after(async () => {
    for (const client of clients) {
      if (client instanceof RawClient) client.socket.destroy();
      else await client.endAsync(true);
    }
    await gateway.stop();
    await cloud.close();
  });

  test("a CONNECT and everything written with it are answered in order, the telemetry ack right after its PUBACK", async () => {
    const client = await raw();
    client.write(
      connectPacket("ss-0", token("ss-0")),
      { cmd: "subscribe", messageId: 1, subscriptions: [{ topic: "d/ss-0/telemetry/ack", qos: 0 }] },
      publishPacket("d/ss-0/telemetry", batch(1), 2),
      { cmd: "pingreq" },
    );
    const answers = await client.packets(5, "five answers");
    assert.deepEqual(
      answers.map((p) => p.cmd),
      ["connack", "suback", "puback", "publish", "pingresp"],
    );
    const [connack, suback, puback, ack] = answers;
    assert.equal(connack?.cmd === "connack" && connack.returnCode, 0);
    assert.deepEqual(suback?.cmd === "suback" && suback.granted, [0]);
    assert.equal(puback?.messageId, 2);
    assert.equal(ack?.cmd === "publish" && ack.topic, "d/ss-0/telemetry/ack");
    assert.deepEqual(ack?.cmd === "publish" && JSON.parse(ack.payload.toString()), { v: 1, boot: 3, seq: 1 });
  });

  test("packets written one byte at a time are read whole", async () => {
    const client = await raw();
    const bytes = Buffer.concat([
      mqttPacket.generate(connectPacket("ss-1", token("ss-1"))),
      mqttPacket.generate(publishPacket("d/ss-1/telemetry", batch(7), 1)),
    ]);
    for (const byte of bytes) {
      client.write(Buffer.from([byte]));
      await sleep(1);
    }
    assert.deepEqual(
      (await client.packets(2, "CONNACK and PUBACK")).map((p) => p.cmd),
      ["connack", "puback"],
    );
    await until(() => samplesOf("ss-1").some((s) => s.seq === 7), "the batch forwarded");
  });

  test("PUBACKs leave in the order of their PUBLISHes, across the uplink and command-ack queues", async () => {
    const client = await raw();
    const publishes = Array.from({ length: 30 }, (_, i) =>
      i % 3 === 0
        ? publishPacket("d/ss-2/cmd/ack", JSON.stringify({ v: 1, id: `c-${i}`, status: "done" }), i + 1)
        : publishPacket("d/ss-2/telemetry", batch(100 + i), i + 1),
    );
    client.write(connectPacket("ss-2", token("ss-2")), ...publishes);
    const answers = await client.packets(31, "a PUBACK for every PUBLISH");
    assert.deepEqual(
      answers.slice(1).map((p) => `${p.cmd} ${p.messageId}`),
      publishes.map((_, i) => `puback ${i + 1}`),
    );
  });

  test("a packet over MQTT_MAX_PACKET_BYTES closes the connection unanswered, and is counted", async () => {
    const client = await raw();
    client.write(connectPacket("ss-3", token("ss-3")));
    await client.packets(1, "CONNACK");
    const before = await rejected("oversize_packet");
    client.write(publishPacket("d/ss-3/log", "x".repeat(MAX_PACKET_BYTES), 1));
    await client.whenClosed("the connection closed");
    assert.deepEqual(
      client.received.map((p) => p.cmd),
      ["connack"],
    );
    assert.equal((await rejected("oversize_packet")) - before, 1);
  });

  test("another protocol name is closed without a CONNACK; another MQTT level gets CONNACK 1", async () => {
    const before = await rejected("bad_protocol");
    const wrongName = await raw();
    const bytes = mqttPacket.generate(connectPacket("ss-4", token("ss-4")));
    bytes.write("MQTX", 4, "latin1");
    wrongName.write(bytes);
    await wrongName.whenClosed("the connection closed");
    assert.deepEqual(wrongName.received, []);

    const mqtt5 = await raw();
    mqtt5.write(connectPacket("ss-4", token("ss-4"), { protocolVersion: 5 }));
    await mqtt5.whenClosed("the connection closed");
    assert.deepEqual(
      mqtt5.received.map((p) => p.cmd === "connack" && p.returnCode),
      [ConnackCode.unacceptableProtocolVersion],
    );
    assert.equal((await rejected("bad_protocol")) - before, 2);
  });

  test("MQTT 3.1 clients (MQIsdp, level 3) connect and publish", async () => {
    const client = await connectAsync(`mqtt://127.0.0.1:${gateway.mqttPort}`, {
      clientId: "ss-5",
      username: "ss-5",
      password: token("ss-5"),
      protocolId: "MQIsdp",
      protocolVersion: 3,
      reconnectPeriod: 0,
    });
    clients.push(client);
    await client.publishAsync("d/ss-5/telemetry", batch(5), { qos: 1 });
    await until(() => samplesOf("ss-5").some((s) => s.seq === 5), "the batch forwarded");
  });

  test("a packet before CONNECT, or a second CONNECT, closes the connection and is counted", async () => {
    const before = await rejected("protocol_violation");
    const early = await raw();
    early.write({ cmd: "pingreq" });
    await early.whenClosed("closed on a packet before CONNECT");
    assert.deepEqual(early.received, []);

    const twice = await raw();
    twice.write(connectPacket("ss-6", token("ss-6")));
    await twice.packets(1, "CONNACK");
    twice.write(connectPacket("ss-6", token("ss-6")));
    await twice.whenClosed("closed on the second CONNECT");
    assert.equal((await rejected("protocol_violation")) - before, 2);
  });

  test("a device silent for 1.5 keep-alive periods is disconnected and its will published; a pinging one stays", async () => {
    const will = offlineWill("ss-7");
    const silent = await raw();
    silent.write(connectPacket("ss-7", token("ss-7"), { keepalive: 1, will }));
    const pinging = await raw();
    pinging.write(connectPacket("ss-8", token("ss-8"), { keepalive: 1 }));
    await silent.packets(1, "CONNACK");
    const connectedAt = Date.now();
    const pings = setInterval(() => pinging.write({ cmd: "pingreq" }), 300);
    try {
      await silent.whenClosed("the silent device disconnected", 10_000);
      assert.ok(Date.now() - connectedAt >= 1400, "not before 1.5 keep-alive periods");
      await until(() => statesOf("ss-7").some((s) => !s.state.online), "its will forwarded");
      await sleep(1000);
      assert.equal(pinging.closed, false);
    } finally {
      clearInterval(pings);
    }
  });

  test("a new connection with the same client id takes over: the old one closes, its will queued first", async () => {
    const will = offlineWill("ss-9");
    const first = await raw();
    first.write(connectPacket("ss-9", token("ss-9"), { will }));
    await first.packets(1, "first CONNACK");
    const second = await raw();
    second.write(connectPacket("ss-9", token("ss-9")), publishPacket("d/ss-9/state", '{"v":1,"online":true}', 1));
    await second.packets(2, "second CONNACK and PUBACK");
    await first.whenClosed("the first connection closed");
    const states = await until(() => statesOf("ss-9").length >= 2 && statesOf("ss-9"), "both states forwarded");
    assert.deepEqual(
      states.map((s) => s.state.online),
      [false, true],
    );
    assert.ok((states[0]?.receivedAt ?? 0) <= (states[1]?.receivedAt ?? 0));
    assert.equal(second.closed, false);
  });

  test("a QoS 2 publish is answered PUBREC then PUBCOMP and delivered once, even when sent twice", async () => {
    const client = await raw();
    const message = publishPacket("d/ss-10/telemetry", batch(42), 5, 2);
    client.write(connectPacket("ss-10", token("ss-10")), message);
    await client.packets(2, "CONNACK and PUBREC");
    client.write({ ...message, dup: true } as Packet, { cmd: "pubrel", messageId: 5 });
    const answers = await client.packets(4, "PUBREC again and PUBCOMP");
    assert.deepEqual(
      answers.map((p) => `${p.cmd} ${p.messageId ?? ""}`),
      ["connack ", "pubrec 5", "pubrec 5", "pubcomp 5"],
    );
    await until(() => samplesOf("ss-10").length > 0, "the batch forwarded");
    await sleep(200);
    assert.deepEqual(
      samplesOf("ss-10").map((s) => s.seq),
      [42],
    );
  });

  test("a will outside the device's topics refuses the CONNECT", async () => {
    const client = await raw();
    const will = { topic: "d/ss-0/state", payload: Buffer.from("{}"), qos: 0 as const, retain: false };
    client.write(connectPacket("ss-11", token("ss-11"), { will }));
    await client.whenClosed("refused");
    assert.deepEqual(
      client.received.map((p) => p.cmd === "connack" && p.returnCode),
      [ConnackCode.notAuthorized],
    );
    assert.equal(
      await gateway.metrics.value("kestrel_gateway_auth_failures_total", { reason: "will_outside_topics" }),
      1,
    );
  });
});

const CONNECT_TIMEOUT_MS = 1000;

describe("the session server on its own", () => {
  let server: Server;
  let port: number;
  let sessions: MqttSessionServer;
  /** Publishes the hook took, and how to let each be acknowledged. */
  const held: Array<{ message: InboundPublish; release: () => void }> = [];

  before(async () => {
    const accept = () => true;
    const ignore = () => undefined;
    const hooks: SessionHooks = {
      authenticate: async () => ConnackCode.accepted,
      mayPublish: accept,
      publish: (_session, message) =>
        new Promise((resolve) => held.push({ message, release: () => resolve(undefined) })),
      maySubscribe: accept,
      subscribed: ignore,
      unsubscribed: ignore,
      closed: ignore,
      connectionError: ignore,
    };
    sessions = new MqttSessionServer({
      hooks,
      maxPacketBytes: 1024 * 1024,
      maxPendingReplies: 4,
      maxBacklogBytes: 64 * 1024,
      connectTimeoutMs: CONNECT_TIMEOUT_MS,
    });
    server = createServer({ noDelay: true }, sessions.handle);
    port = await listen(server, 0, "127.0.0.1");
  });

  after(async () => {
    await sessions.close();
    server.close();
  });

  test("a connection with maxPendingReplies unanswered is not read until some are answered", async () => {
    const client = await RawClient.open(port);
    client.write(connectPacket("bp-1", "x"));
    await client.packets(1, "CONNACK");
    client.write(...Array.from({ length: 4 }, (_, i) => publishPacket("t/bp", `m${i}`, i + 1)));
    await until(() => held.length === 4, "four publishes held");
    client.write(...Array.from({ length: 3 }, (_, i) => publishPacket("t/bp", `m${4 + i}`, 5 + i)));
    await sleep(300);
    assert.equal(held.length, 4, "nothing more read while four wait");
    for (const { release } of held.splice(0)) release();
    await until(() => held.length === 3, "the rest read once they were acknowledged");
    for (const { release } of held.splice(0)) release();
    const answers = await client.packets(8, "seven PUBACKs");
    assert.deepEqual(
      answers.slice(1).map((p) => p.messageId),
      [1, 2, 3, 4, 5, 6, 7],
    );
    client.socket.destroy();
  });

  test("a CONNECT trickled in slower than connectTimeoutMs allows is cut off, however steady the trickle", async () => {
    const client = await RawClient.open(port);
    const bytes = mqttPacket.generate(connectPacket("bp-3", "x"));
    const openedAt = Date.now();
    // One byte every 200 ms takes several times the timeout; the last byte is never sent.
    for (const byte of bytes.subarray(0, -1)) {
      if (client.closed) break;
      client.write(Buffer.from([byte]));
      await sleep(200);
    }
    assert.equal(client.closed, true, "closed before the CONNECT could complete");
    assert.ok(Date.now() - openedAt >= CONNECT_TIMEOUT_MS);
    assert.deepEqual(client.received, []);
  });

  test("a client that reads nothing is refused further messages once its backlog is full", async () => {
    const client = await RawClient.open(port);
    client.write(connectPacket("bp-2", "x"), {
      cmd: "subscribe",
      messageId: 1,
      subscriptions: [{ topic: "t/down", qos: 1 }],
    });
    await client.packets(2, "CONNACK and SUBACK");
    assert.throws(() => sessions.deliver("bp-2", "t/other", "x", 1), /not subscribed/);
    assert.throws(() => sessions.deliver("nobody", "t/down", "x", 1), /not connected/);
    client.socket.pause();
    const payload = Buffer.alloc(100_000);
    let sent = 0;
    const refused = await until(
      async () => {
        try {
          sessions.deliver("bp-2", "t/down", payload, 1);
          sent++;
        } catch (error) {
          return error as Error;
        }
        await sleep(1);
        // Kernel buffers take a few MB first; a backlog that never fills fails the test.
        return sent > 2000 ? new Error("never refused") : undefined;
      },
      "the backlog to fill",
      60_000,
      0,
    );
    assert.match(refused.message, /not reading/);
    // The backlog stopped growing at its bound (plus the one message that crossed it).
    assert.ok((sessions.session("bp-2")?.socket.writableLength ?? 0) < 64 * 1024 + 2 * payload.length);
    client.socket.destroy();
  });
});
