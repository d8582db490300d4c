// The SDK's own TLS and MQTT client against the gateway, as a device runs them: built for the SDK's
// Linux simulator (mcsim) by scripts/check-moddable.ts, which reads these trace lines. Devices in
// turn: one authenticates with its token, one with its RSA client certificate (mutual TLS), and one
// with an EC client certificate, which Moddable's TLS client cannot use (its handshake fails). Each
// connects with the CA (and the certificate and PKCS#8 key) built in as resources, publishes one
// telemetry batch at QoS 1 and waits for the gateway's telemetry ack.

import Resource from "Resource";
import config from "mc/config";
import Client from "mqtt";
import SecureSocket from "securesocket";
import Timer from "timer";

const TLS_1_2 = 0x0303;
const CASES = [
  { name: "token", deviceId: config.tokenDevice, token: config.token },
  { name: "certificate", deviceId: config.certDevice, cert: config.mqttClientCert, key: config.mqttClientKey },
  { name: "ec-certificate", deviceId: config.ecCertDevice, cert: config.mqttEcClientCert, key: config.mqttEcClientKey },
];

function connect(index) {
  const device = CASES[index];
  if (!device) {
    trace("interop: done\n");
    return;
  }
  const say = (what) => trace(`interop: ${device.name}: ${what}\n`);
  const secure = { protocolVersion: TLS_1_2, certificate: new Resource(config.mqttCa) };
  if (device.cert) {
    secure.clientCertificates = [new Resource(device.cert)];
    secure.clientKey = new Resource(device.key);
  }
  const options = {
    host: config.mqttHost,
    port: Number(config.mqttPort),
    id: device.deviceId,
    Socket: SecureSocket,
    secure,
  };
  if (device.token) {
    options.user = device.deviceId;
    options.password = device.token;
  }
  const batch = { v: 1, boot: Number(config.boot), samples: [{ seq: 0, ts: Date.now(), m: { temperature: 21.5 } }] };
  let finished = false;
  // Closing a secure socket inside its own callback is unsafe on this platform: the next step runs from a timer.
  const next = () => {
    if (finished) return;
    finished = true;
    Timer.set(() => {
      client.close();
      connect(index + 1);
    }, 0);
  };
  const client = new Client(options);
  client.onReady = () => {
    say("CONNACK");
    client.subscribe(`d/${device.deviceId}/telemetry/ack`);
    client.publish(`d/${device.deviceId}/telemetry`, JSON.stringify(batch), { quality: 1 });
    say("PUBLISH telemetry (QoS 1)");
  };
  client.onMessage = (topic, data) => {
    say(`${topic} ${String.fromArrayBuffer(data)}`);
    if (topic.endsWith("/telemetry/ack")) next();
  };
  client.onClose = () => {
    say("closed");
    next();
  };
}

connect(0);
