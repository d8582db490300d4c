// A real MQTT broker (aedes) on a free loopback port for the simulator tests: checks device
// credentials like the gateway does, records every publish it accepts, wills included, and acks
// each valid telemetry batch on the device's telemetry-ack topic as the gateway does.

import { once } from "node:events";
import { type AddressInfo, createServer, type Server } from "node:net";
import { createServer as createTlsServer, type TlsOptions } from "node:tls";
import { parseTelemetryBatch, parseTopic, type TelemetryAck, topics, WIRE_VERSION } from "@kestrel/wire";
import { Aedes, type AedesPublishPacket, type Client } from "aedes";

export interface RecordedPublish {
  clientId: string | undefined;
  topic: string;
  payload: string;
  qos: number;
  retain: boolean;
}

export interface TestBroker {
  url: string;
  published: RecordedPublish[];
  /** Resolves with the first recorded publish (past or future) that matches. */
  waitFor(match: (message: RecordedPublish) => boolean, timeoutMs?: number): Promise<RecordedPublish>;
  /** Resolves once clientId has subscribed to topic (or already had). */
  waitForSubscription(clientId: string, topic: string, timeoutMs?: number): Promise<void>;
  /** Publishes as the gateway would (QoS 1, not retained) to whoever subscribed. */
  publish(topic: string, payload: string): Promise<void>;
  /** While set, the client is cut off and its connection attempts are refused (server unavailable). */
  setReachable(clientId: string, reachable: boolean): void;
  /** While set, the client's telemetry gets no telemetry ack (as if each QoS 0 ack were lost). */
  withholdAcks(clientId: string, withhold: boolean): void;
  /** Drops a client's connection from the broker side, as a network failure would. */
  disconnect(clientId: string): void;
  close(): Promise<void>;
}

/** With tls, the broker listens behind node:tls (mqtts://); requestCert + rejectUnauthorized make it mutual. */
export async function startBroker(tokens: ReadonlyMap<string, string>, tls?: TlsOptions): Promise<TestBroker> {
  const unreachable = new Set<string>();
  const ackless = new Set<string>();
  const broker = await Aedes.createBroker({
    authenticate(client, username, password, done) {
      if (unreachable.has(client.id)) {
        done(Object.assign(new Error("unreachable"), { returnCode: 3 }), false);
        return;
      }
      const expected = tokens.get(client.id);
      const ok = expected !== undefined && username === client.id && password?.toString() === expected;
      done(ok ? null : Object.assign(new Error("bad credentials"), { returnCode: 4 }), ok);
    },
  });
  const clients = new Map<string, Client>();
  broker.on("client", (client) => clients.set(client.id, client));
  broker.on("clientDisconnect", (client) => clients.delete(client.id));

  const published: RecordedPublish[] = [];
  const waiters = new Set<(message: RecordedPublish) => void>();
  broker.on("publish", (packet: AedesPublishPacket, client: Client | null) => {
    if (packet.topic.startsWith("$SYS")) return;
    const message: RecordedPublish = {
      clientId: client?.id,
      topic: packet.topic,
      payload: packet.payload.toString(),
      qos: packet.qos,
      retain: packet.retain,
    };
    published.push(message);
    for (const waiter of waiters) waiter(message);
    const deviceId = client?.id;
    if (deviceId === undefined || ackless.has(deviceId) || parseTopic(packet.topic)?.kind !== "telemetry") return;
    const batch = parseTelemetryBatch(message.payload);
    if (!batch.ok) return;
    const last = batch.value.samples.at(-1)?.seq ?? 0;
    const ack: TelemetryAck = { v: WIRE_VERSION, boot: batch.value.boot, seq: last };
    broker.publish(
      {
        cmd: "publish",
        topic: topics.telemetryAck(deviceId),
        payload: Buffer.from(JSON.stringify(ack)),
        qos: 0,
        retain: false,
        dup: false,
      },
      () => undefined,
    );
  });

  const subscriptions: { clientId: string; topic: string }[] = [];
  broker.on("subscribe", (subs, client) => {
    for (const sub of subs) subscriptions.push({ clientId: client.id, topic: sub.topic });
  });

  const server: Server = tls ? createTlsServer(tls, broker.handle) : createServer(broker.handle);
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const { port } = server.address() as AddressInfo;

  return {
    url: `${tls ? "mqtts" : "mqtt"}://127.0.0.1:${port}`,
    published,
    waitFor(match, timeoutMs = 10_000) {
      const earlier = published.find(match);
      if (earlier) return Promise.resolve(earlier);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          waiters.delete(waiter);
          reject(new Error(`no matching publish within ${timeoutMs} ms`));
        }, timeoutMs);
        const waiter = (message: RecordedPublish): void => {
          if (!match(message)) return;
          clearTimeout(timer);
          waiters.delete(waiter);
          resolve(message);
        };
        waiters.add(waiter);
      });
    },
    async waitForSubscription(clientId, topic, timeoutMs = 10_000) {
      const deadline = Date.now() + timeoutMs;
      while (!subscriptions.some((sub) => sub.clientId === clientId && sub.topic === topic)) {
        if (Date.now() > deadline) throw new Error(`${clientId} did not subscribe to ${topic} within ${timeoutMs} ms`);
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
    },
    publish(topic, payload) {
      return new Promise((resolve, reject) =>
        broker.publish(
          { cmd: "publish", topic, payload: Buffer.from(payload), qos: 1, retain: false, dup: false },
          (error?: Error) => (error ? reject(error) : resolve()),
        ),
      );
    },
    setReachable(clientId, reachable) {
      if (reachable) unreachable.delete(clientId);
      else {
        unreachable.add(clientId);
        clients.get(clientId)?.conn.destroy();
      }
    },
    withholdAcks(clientId, withhold) {
      if (withhold) ackless.add(clientId);
      else ackless.delete(clientId);
    },
    disconnect(clientId) {
      clients.get(clientId)?.conn.destroy();
    },
    async close() {
      await new Promise<void>((resolve) => broker.close(() => resolve()));
      server.close();
    },
  };
}
