// Starts the whole platform in one process tree on loopback: the store
// (FerretDB unless MONGODB_URI is given), the cloud, the gateway and simulated
// devices running the real firmware in XS, talking MQTT over TLS with a local
// CA kept in the data directory. Used by `make run` and by the end-to-end and
// browser tests.

import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { bootstrap, buildApp, connectDb, loadConfig, startEmbeddedFerretDb } from "@kestrel/cloud";
import { type SimDevice, startSimDevice } from "@kestrel/firmware/sim";
import { type Gateway, loadGatewayConfig, startGateway } from "@kestrel/gateway";
import { CertificateAuthority, type IssuedCertificate, tlsListenerEnv } from "@kestrel/gateway/pki";
import type { Logger } from "pino";

export interface PlatformOptions {
  dataDir: string;
  deviceCount: number;
  logger: Logger;
  mongoUri?: string;
  cloudPort?: number;
  /** MQTT over TLS; a free port unless given. */
  mqttTlsPort?: number;
  /** Plain MQTT over TCP, only when given (devices always use TLS). */
  mqttPort?: number;
  /** Devices present their own certificate from the local CA (mutual TLS) instead of relying on their token. */
  mutualTls?: boolean;
  gatewayHttpPort?: number;
  sampleIntervalMs?: number;
  samplesPerBatch?: number;
  /** Firmware config overrides for every device (manifest config names, e.g. watchdogTimeoutMs). */
  deviceSettings?: Readonly<Record<string, string | number>>;
  /** Reuse credentials saved by an earlier run in dataDir (the local runner); tests start fresh. */
  reuseCredentials?: boolean;
  /** The gateway's queues and id; default `<dataDir>/gateway`. */
  gatewayDataDir?: string;
}

export interface Credentials {
  tenantId: string;
  admin: { email: string; password: string };
  gatewayKey: string;
  devices: Array<{ deviceId: string; token: string }>;
}

export interface Platform {
  cloudUrl: string;
  /** mqtts://127.0.0.1:PORT; clients verify it against tls.ca. */
  mqttUrl: string;
  /** mqtt://127.0.0.1:PORT when a plain TCP port was asked for. */
  mqttPlainUrl: string | undefined;
  tls: { ca: string; caPath: string };
  credentials: Credentials;
  /** Where the credentials were saved (mode 0600). */
  credentialsPath: string;
  gateway: Gateway;
  devices: SimDevice[];
  /** Stops the devices only, leaving the pipeline running so it can drain. */
  stopDevices(): Promise<void>;
  stop(): Promise<void>;
}

const ADMIN_EMAIL = "admin@kestrel.local";
const CA_DAYS = 3650;
const CERTIFICATE_DAYS = 397;
// A device id is at most 64 characters of [A-Za-z0-9_-]: no device can take this name.
const GATEWAY_CERTIFICATE = "gateway.server";

interface LocalPki {
  ca: CertificateAuthority;
  /** An ECDSA and an RSA certificate: Moddable's client offers ECDHE-ECDSA, ECDHE-RSA and DHE-RSA suites. */
  servers: IssuedCertificate[];
  /** Device client certificates: RSA, the only key type Moddable's TLS client can sign with. */
  devices: Map<string, IssuedCertificate>;
}

/** The local CA and the certificates made from it: made on the first run, reused while valid. */
function localPki(dataDir: string, deviceIds: string[], mutualTls: boolean): LocalPki {
  const ca = CertificateAuthority.openOrCreate(join(dataDir, "pki"), "Kestrel local CA", CA_DAYS);
  const hosts = ["127.0.0.1", "localhost"];
  const servers = [
    ca.reuseOrIssue(GATEWAY_CERTIFICATE, { kind: "server", hosts, key: "ec" }, CERTIFICATE_DAYS),
    ca.reuseOrIssue(`${GATEWAY_CERTIFICATE}-rsa`, { kind: "server", hosts, key: "rsa" }, CERTIFICATE_DAYS),
  ];
  const devices = new Map(
    mutualTls ? deviceIds.map((id) => [id, ca.reuseOrIssue(id, { kind: "client" }, CERTIFICATE_DAYS)] as const) : [],
  );
  return { ca, servers, devices };
}

async function loadSavedCredentials(path: string): Promise<Credentials | undefined> {
  try {
    return JSON.parse(await readFile(path, "utf8")) as Credentials;
  } catch {
    return undefined;
  }
}

export async function startPlatform(options: PlatformOptions): Promise<Platform> {
  const { logger, dataDir } = options;
  const stops: Array<() => Promise<void>> = [];
  const stopAll = async () => {
    for (const stop of stops.reverse()) {
      await stop().catch((error: unknown) => logger.error({ err: error }, "stop failed"));
    }
    stops.length = 0;
  };
  try {
    await mkdir(dataDir, { recursive: true });
    let mongoUri = options.mongoUri;
    if (!mongoUri) {
      const ferret = await startEmbeddedFerretDb({ dataDir: join(dataDir, "ferretdb") });
      stops.push(() => ferret.stop());
      mongoUri = ferret.uri;
    }
    const config = loadConfig({
      ...process.env,
      MONGODB_URI: mongoUri,
      PORT: String(options.cloudPort ?? 0),
      HOST: "127.0.0.1",
      DATA_DIR: dataDir,
    });
    const store = await connectDb(mongoUri, config.mongoDb);
    stops.push(() => store.close());

    const credentialsPath = join(dataDir, "credentials.json");
    const deviceIds = Array.from({ length: options.deviceCount }, (_, i) => `sim-${String(i + 1).padStart(3, "0")}`);
    let credentials = options.reuseCredentials ? await loadSavedCredentials(credentialsPath) : undefined;
    if (!credentials || credentials.devices.length !== deviceIds.length) {
      credentials = await bootstrap(store.db, { tenantName: "Local", adminEmail: ADMIN_EMAIL, deviceIds });
      await writeFile(credentialsPath, JSON.stringify(credentials, null, 2), { mode: 0o600 });
    }

    const app = await buildApp({ db: store.db, logger: logger.child({ service: "cloud" }), config });
    await app.listen({ port: config.port, host: config.host });
    stops.push(() => app.close());
    const address = app.server.address();
    const cloudPort = typeof address === "object" && address ? address.port : config.port;
    const cloudUrl = `http://127.0.0.1:${cloudPort}`;

    const pki = localPki(
      dataDir,
      credentials.devices.map((d) => d.deviceId),
      options.mutualTls ?? false,
    );
    const gateway = await startGateway(
      loadGatewayConfig({
        ...process.env,
        MQTT_PORT: options.mqttPort === undefined ? "off" : String(options.mqttPort),
        MQTT_TLS_PORT: String(options.mqttTlsPort ?? 0),
        ...tlsListenerEnv(pki.servers),
        MQTT_TLS_CLIENT_CA: pki.ca.certificatePath,
        GATEWAY_HTTP_PORT: String(options.gatewayHttpPort ?? 0),
        CLOUD_URL: cloudUrl,
        GATEWAY_KEY: credentials.gatewayKey,
        GATEWAY_DATA_DIR: options.gatewayDataDir ?? join(dataDir, "gateway"),
      }),
      logger.child({ service: "gateway" }),
    );
    stops.push(() => gateway.stop());
    const mqttUrl = `mqtts://127.0.0.1:${gateway.mqttTlsPort}`;
    const mqttPlainUrl = gateway.mqttPort === undefined ? undefined : `mqtt://127.0.0.1:${gateway.mqttPort}`;

    const devices: SimDevice[] = [];
    const stopDevices = async () => {
      const running = devices.splice(0);
      await Promise.all(running.map((device) => device.stop()));
    };
    stops.push(stopDevices);
    for (const [index, device] of credentials.devices.entries()) {
      const certificate = pki.devices.get(device.deviceId);
      devices.push(
        await startSimDevice({
          deviceId: device.deviceId,
          token: device.token,
          mqttUrl,
          tls: { ca: pki.ca.certificate, ...(certificate && { cert: certificate.cert, key: certificate.key }) },
          stateDir: join(dataDir, "devices", device.deviceId),
          sampleIntervalMs: options.sampleIntervalMs,
          samplesPerBatch: options.samplesPerBatch,
          settings: options.deviceSettings,
          seed: index + 1,
          logger: logger.child({ service: "device", deviceId: device.deviceId }),
        }),
      );
    }
    return {
      cloudUrl,
      mqttUrl,
      mqttPlainUrl,
      tls: { ca: pki.ca.certificate, caPath: pki.ca.certificatePath },
      credentials,
      credentialsPath,
      gateway,
      devices: [...devices],
      stopDevices,
      stop: stopAll,
    };
  } catch (error) {
    await stopAll();
    throw error;
  }
}
