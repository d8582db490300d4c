// Starts the whole platform in one process tree on loopback: the store
// (FerretDB unless MONGODB_URI is given), the cloud, the gateway and simulated
// devices running the real firmware in XS, talking MQTT over TLS with a local
// CA kept in the data directory. Used by `make run` and by the end-to-end and
// browser tests.

import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import {
  bootstrap,
  buildApp,
  connectDb,
  type EmbeddedBackend,
  loadConfig,
  SecretBox,
  SigningService,
  startEmbeddedFerretDb,
} from "@kestrel/cloud";
import { type SimDevice, startSimDevice } from "@kestrel/firmware/sim";
import { type Gateway, loadGatewayConfig, startGateway } from "@kestrel/gateway";
import { CertificateAuthority, type IssuedCertificate, tlsListenerEnv } from "@kestrel/gateway/pki";
import type { Logger } from "pino";

export interface PlatformOptions {
  dataDir: string;
  deviceCount: number;
  logger: Logger;
  mongoUri?: string;
  /** The embedded FerretDB's storage when mongoUri is not given; default FERRETDB_BACKEND or the embedded default. */
  backend?: EmbeddedBackend;
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
  /**
   * Stops everything, in order, each part within its own deadline (STOP_DEADLINES), whatever the
   * database does: at most STOP_DEADLINE_MS in all, FerretDB killed if it does not stop by then.
   * What was acknowledged is on disk (gateway queue, cloud journal) and is delivered on the next start.
   */
  stop(): Promise<void>;
  /** The FerretDB process started for this platform, if any. */
  readonly databasePid: number | undefined;
}

/** How long each part may take to stop before the next one goes ahead anyway. */
export const STOP_DEADLINES = {
  devices: 1_500,
  gateway: 3_000,
  cloud: 2_000,
  /** The cloud's database client. */
  store: 1_000,
  /** FerretDB, killed past this. */
  database: 2_000,
} as const;
export const STOP_DEADLINE_MS = Object.values(STOP_DEADLINES).reduce((sum, ms) => sum + ms, 0);
/** What the gateway's uplink may still spend delivering while it stops; the rest stays queued on disk. */
const GATEWAY_DELIVER_MS = 1_500;

type StopStep = { part: keyof typeof STOP_DEADLINES; stop: () => Promise<void> };

/** Runs the step, but waits for it no longer than its deadline. */
async function stopWithin(step: StopStep, logger: Logger): Promise<void> {
  const deadlineMs = STOP_DEADLINES[step.part];
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<"late">((resolve) => {
    timer = setTimeout(() => resolve("late"), deadlineMs);
  });
  const outcome = await Promise.race([
    step.stop().then(
      () => "stopped" as const,
      (error: unknown) => {
        logger.error({ err: error, part: step.part }, "stop failed");
        return "failed" as const;
      },
    ),
    late,
  ]);
  clearTimeout(timer);
  if (outcome === "late") logger.warn({ part: step.part, deadlineMs }, "did not stop in time; going on");
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
  const stops: StopStep[] = [];
  let databasePid: number | undefined;
  const stopAll = async () => {
    for (const step of stops.reverse()) await stopWithin(step, logger);
    stops.length = 0;
  };
  try {
    await mkdir(dataDir, { recursive: true });
    let mongoUri = options.mongoUri;
    if (!mongoUri) {
      const ferret = await startEmbeddedFerretDb({
        dataDir: join(dataDir, "ferretdb"),
        backend: options.backend ?? loadConfig({ ...process.env, DATA_DIR: dataDir }).embeddedBackend,
        // Killed within its step's deadline if a graceful stop does not end it.
        stopTimeoutMs: STOP_DEADLINES.database - 500,
      });
      stops.push({ part: "database", stop: () => ferret.stop() });
      mongoUri = ferret.uri;
      databasePid = ferret.pid;
    }
    const config = loadConfig({
      ...process.env,
      MONGODB_URI: mongoUri,
      PORT: String(options.cloudPort ?? 0),
      HOST: "127.0.0.1",
      DATA_DIR: dataDir,
    });
    const store = await connectDb(mongoUri, config.mongoDb);
    stops.push({ part: "store", stop: () => store.close() });

    const credentialsPath = join(dataDir, "credentials.json");
    const deviceIds = Array.from({ length: options.deviceCount }, (_, i) => `sim-${String(i + 1).padStart(3, "0")}`);
    let credentials = options.reuseCredentials ? await loadSavedCredentials(credentialsPath) : undefined;
    if (!credentials || credentials.devices.length !== deviceIds.length) {
      credentials = await bootstrap(store.db, { tenantName: "Local", adminEmail: ADMIN_EMAIL, deviceIds });
      await writeFile(credentialsPath, JSON.stringify(credentials, null, 2), { mode: 0o600 });
    }

    // The organization's first signing key is built into the devices, as a real build would carry it.
    const otaKeys = await new SigningService(
      store.db,
      await SecretBox.open(config.secretsKey, config.dataDir),
    ).provisioningKey(credentials.tenantId, ADMIN_EMAIL);

    const app = await buildApp({ db: store.db, logger: logger.child({ service: "cloud" }), config });
    stops.push({ part: "cloud", stop: () => app.close() });
    await app.listen({ port: config.port, host: config.host });
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
    stops.push({ part: "gateway", stop: () => gateway.stop(GATEWAY_DELIVER_MS) });
    const mqttUrl = `mqtts://127.0.0.1:${gateway.mqttTlsPort}`;
    const mqttPlainUrl = gateway.mqttPort === undefined ? undefined : `mqtt://127.0.0.1:${gateway.mqttPort}`;

    const devices: SimDevice[] = [];
    const stopDevices = async () => {
      const running = devices.splice(0);
      await Promise.all(running.map((device) => device.stop()));
    };
    stops.push({ part: "devices", stop: stopDevices });
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
          settings: { otaKeys, ...options.deviceSettings },
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
      databasePid,
    };
  } catch (error) {
    await stopAll();
    throw error;
  }
}
