// An MQTT layer alone, without the gateway around it (no authentication, intake, disk or acks): aedes,
// which the gateway used until issue 11, or the gateway's own session server. The throughput
// benchmark runs it (BROKERS=aedes,session) to compare what each costs a message under the same load.
//   node --import tsx gateway/bench/bare-broker.ts <aedes|session> <port>

import { createServer } from "node:net";
import { Aedes } from "aedes";
import { ConnackCode } from "../src/broker/mqtt-codec.ts";
import { MqttSessionServer } from "../src/broker/session-server.ts";

const [layer, port] = process.argv.slice(2);
let handle: (socket: import("node:net").Socket) => void;
if (layer === "aedes") {
  handle = (await Aedes.createBroker()).handle;
} else if (layer === "session") {
  const accept = () => true;
  const ignore = () => undefined;
  handle = new MqttSessionServer({
    maxPacketBytes: 256 * 1024,
    hooks: {
      authenticate: async () => ConnackCode.accepted,
      mayPublish: accept,
      publish: async () => undefined,
      maySubscribe: accept,
      subscribed: ignore,
      unsubscribed: ignore,
      closed: ignore,
      connectionError: ignore,
    },
  }).handle;
} else {
  throw new Error(`usage: bare-broker.ts <aedes|session> <port>, not ${layer}`);
}
createServer({ noDelay: true }, handle).listen(Number(port), "127.0.0.1");
// A profile (--cpu-prof) is written only on a normal exit.
process.on("SIGTERM", () => process.exit(0));
