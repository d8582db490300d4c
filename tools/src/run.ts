// `make run`: the whole platform locally on embedded defaults, until Ctrl-C.

import { join } from "node:path";
import { pino } from "pino";
import { STOP_DEADLINE_MS, startPlatform } from "./platform.ts";

const root = join(import.meta.dirname, "..", "..");
const logger = pino({ level: process.env.LOG_LEVEL || "warn" });
const deviceCount = Number(process.env.DEVICES || 3);
if (!Number.isInteger(deviceCount) || deviceCount < 1 || deviceCount > 200) {
  process.stderr.write("DEVICES must be an integer between 1 and 200\n");
  process.exit(2);
}

const dataDir = process.env.DATA_DIR || join(root, ".data");
const platform = await startPlatform({
  dataDir,
  deviceCount,
  logger,
  mongoUri: process.env.MONGODB_URI || undefined,
  cloudPort: Number(process.env.PORT || 8080),
  mqttTlsPort: Number(process.env.MQTT_TLS_PORT || 8883),
  // Plain MQTT only when asked for, e.g. MQTT_PORT=1883 for tools without TLS.
  mqttPort: process.env.MQTT_PORT ? Number(process.env.MQTT_PORT) : undefined,
  mutualTls: process.env.MUTUAL_TLS === "1",
  gatewayHttpPort: Number(process.env.GATEWAY_HTTP_PORT || 8081),
  reuseCredentials: true,
});

const { admin } = platform.credentials;
process.stdout.write(
  [
    "",
    "Kestrel is running.",
    `  dashboard  ${platform.cloudUrl}/`,
    `  login      ${admin.email} / ${admin.password}`,
    `  mqtt       ${platform.mqttUrl} (gateway, TLS${process.env.MUTUAL_TLS === "1" ? ", devices use client certificates" : ""})`,
    `  ca         ${platform.tls.caPath} (verify the gateway with it, e.g. mosquitto_sub --cafile)`,
    ...(platform.mqttPlainUrl ? [`  mqtt       ${platform.mqttPlainUrl} (gateway, plain TCP)`] : []),
    `  devices    ${platform.devices.map((d) => d.deviceId).join(", ")}`,
    `  (credentials saved in ${join(dataDir, "credentials.json")}; Ctrl-C stops everything)`,
    "",
  ].join("\n"),
);

// Ctrl-C or SIGTERM: a stop bounded by STOP_DEADLINE_MS whatever the database does, then exit; a
// second one exits at once. Either way FerretDB goes too (it is killed on exit if still running).
let stopping = false;
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.on(signal, () => {
    if (stopping) {
      process.stdout.write("stopping now\n");
      process.exit(130);
    }
    stopping = true;
    process.stdout.write(`\nstopping (at most ${Math.ceil(STOP_DEADLINE_MS / 1000)} s; Ctrl-C again to quit now)...\n`);
    setTimeout(() => process.exit(1), STOP_DEADLINE_MS + 500).unref();
    platform.stop().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  });
}
