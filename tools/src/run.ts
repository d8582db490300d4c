// `make run`: the whole platform locally on embedded defaults, until Ctrl-C. The banner is the only
// thing on the terminal: logs go to a file it names, so none lands in the middle of it.

import { mkdirSync } from "node:fs";
import { join, resolve } from "node:path";
import { createLogger } from "@kestrel/cloud";
import { pino } from "pino";
import { STOP_DEADLINE_MS, startPlatform } from "./platform.ts";

const root = join(import.meta.dirname, "..", "..");
const dataDir = resolve(process.env.DATA_DIR || join(root, ".data"));
const deviceCount = Number(process.env.DEVICES || 3);
if (!Number.isInteger(deviceCount) || deviceCount < 1 || deviceCount > 200) {
  process.stderr.write("DEVICES must be an integer between 1 and 200\n");
  process.exit(2);
}
const logPath = resolve(process.env.LOG_FILE || join(dataDir, "logs", "kestrel.log"));
mkdirSync(join(logPath, ".."), { recursive: true });
const logger = createLogger({
  level: process.env.LOG_LEVEL || "info",
  destination: pino.destination({ dest: logPath, sync: false }),
});

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
  gatewayDataDir: process.env.GATEWAY_DATA_DIR ? resolve(process.env.GATEWAY_DATA_DIR) : undefined,
  reuseCredentials: true,
});

const { admin } = platform.credentials;
const gatewayHttp = `http://127.0.0.1:${platform.gateway.httpPort}`;
process.stdout.write(
  [
    "",
    "Kestrel is running.",
    `  dashboard  ${platform.cloudUrl}/`,
    `  login      ${admin.email} / ${admin.password}`,
    `  mqtt       ${platform.mqttUrl} (gateway, TLS${process.env.MUTUAL_TLS === "1" ? ", devices use client certificates" : ""})`,
    `  ca         ${platform.tls.caPath} (verify the gateway with it, e.g. mosquitto_sub --cafile)`,
    ...(platform.mqttPlainUrl ? [`  mqtt       ${platform.mqttPlainUrl} (gateway, plain TCP)`] : []),
    `  gateway    ${gatewayHttp}/healthz, ${gatewayHttp}/metrics`,
    `  devices    ${platform.devices.map((d) => d.deviceId).join(", ")}`,
    `  logs       ${logPath}`,
    `  (credentials saved in ${platform.credentialsPath}; Ctrl-C stops everything)`,
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
      () => {
        logger.flush();
        process.stdout.write("stopped\n");
        process.exit(0);
      },
      (error: unknown) => {
        process.stderr.write(`stop failed: ${error instanceof Error ? error.message : String(error)}\n`);
        process.exit(1);
      },
    );
  });
}
