// A simulated Kestrel device: the compiled firmware running in XS on a board with one I2C bus (a
// BMP280 model at the configured address), flash preferences in a state directory, and a network
// path to an MQTT broker. A restart (the firmware's System.restart) replaces the XS machine and keeps
// the flash, as a chip reset does.

import { createPrivateKey, X509Certificate } from "node:crypto";
import { join } from "node:path";
import { Bmp280Model } from "./bmp280-model.ts";
import { RealTimeClock, type SimClock } from "./clock.ts";
import { loadFirmwareImage } from "./firmware-image.ts";
import { FlashPartition } from "./flash.ts";
import { GpioModel } from "./gpio.ts";
import { I2cBus, I2cPort } from "./i2c-bus.ts";
import { type SimLogger, silentLogger } from "./logger.ts";
import { MqttBridge } from "./mqtt-bridge.ts";
import { PreferenceStore } from "./preferences.ts";
import { type MachineModule, XsMachine, type XsMeters } from "./xs-machine.ts";

export interface SimDeviceOptions {
  deviceId: string;
  token: string;
  /** mqtt://127.0.0.1:PORT, or mqtts:// (then tls is required). */
  mqttUrl: string;
  /**
   * What the device build would carry as resources for MQTT over TLS (PEM here, DER on the
   * device): the CA the server's chain must lead to and, for mutual TLS, the device's own
   * certificate and private key.
   */
  tls?: { ca: string | Buffer; cert?: string | Buffer; key?: string | Buffer };
  /** Holds `<deviceId>.preferences.json` (NVS) and `<deviceId>.flash.bin` (the data partition). */
  stateDir: string;
  /** Size of the data partition holding unsent batches; 128 KiB (32 sectors) unless given. */
  flashBytes?: number;
  sampleIntervalMs?: number;
  samplesPerBatch?: number;
  /** Trajectory and noise of the BMP280 model; derived from deviceId when omitted. */
  seed?: number;
  logger?: SimLogger;
  /** Real time unless given. */
  clock?: SimClock;
}

export interface SimDevice {
  deviceId: string;
  bmp280: Bmp280Model;
  /** Levels the firmware drove on the board's pins (the status LED), across restarts. */
  gpio: GpioModel;
  /** Restarts the firmware asked for since power-on. */
  readonly restarts: number;
  /** Power off: the firmware stops and its sockets drop without DISCONNECT (the broker sends the will). */
  stop(): Promise<void>;
  meters(): XsMeters;
  /** Resolves once the firmware's MQTT client has handled its first onReady. */
  connected: Promise<void>;
}

const DEFAULT_FLASH_BYTES = 128 * 1024;

/** FNV-1a, so every device id gets its own weather. */
function seedFrom(text: string): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) hash = Math.imul(hash ^ text.charCodeAt(i), 0x01000193);
  return hash >>> 0;
}

function brokerAddress(mqttUrl: string): { host: string; port: number; tls: boolean } {
  const url = new URL(mqttUrl);
  if (url.protocol !== "mqtt:" && url.protocol !== "mqtts:")
    throw new Error(`mqttUrl must be mqtt://host:port or mqtts://host:port, got ${mqttUrl}`);
  const tls = url.protocol === "mqtts:";
  return { host: url.hostname, port: url.port === "" ? (tls ? 8883 : 1883) : Number(url.port), tls };
}

/** Resource names the simulated build gives the TLS material (mc/config names them, as on a device). */
const CA_RESOURCE = "mqtt-ca.der";
const CERT_RESOURCE = "device-cert.der";
const KEY_RESOURCE = "device-key.der";

/** The TLS material as DER resources, and the config entries that point the firmware at them. */
function tlsResources(tls: NonNullable<SimDeviceOptions["tls"]>): {
  resources: Map<string, Buffer>;
  config: Record<string, unknown>;
} {
  const resources = new Map<string, Buffer>([[CA_RESOURCE, new X509Certificate(tls.ca).raw]]);
  const config: Record<string, unknown> = { mqttTls: 1, mqttCa: CA_RESOURCE };
  if ((tls.cert === undefined) !== (tls.key === undefined)) throw new Error("tls.cert and tls.key go together");
  if (tls.cert !== undefined && tls.key !== undefined) {
    resources.set(CERT_RESOURCE, new X509Certificate(tls.cert).raw);
    resources.set(KEY_RESOURCE, createPrivateKey(tls.key).export({ format: "der", type: "pkcs8" }));
    Object.assign(config, { mqttClientCert: CERT_RESOURCE, mqttClientKey: KEY_RESOURCE });
  }
  return { resources, config };
}

function configInteger(config: Readonly<Record<string, unknown>>, key: string): number {
  const value = config[key];
  if (typeof value !== "number" || !Number.isInteger(value))
    throw new Error(`manifest config ${key} must be an integer`);
  return value;
}

export async function startSimDevice(options: SimDeviceOptions): Promise<SimDevice> {
  const logger = options.logger ?? silentLogger;
  const clock = options.clock ?? new RealTimeClock();
  const image = loadFirmwareImage();
  const broker = brokerAddress(options.mqttUrl);
  if (broker.tls !== (options.tls !== undefined)) throw new Error("an mqtts:// broker and the tls option go together");
  const tls = options.tls ? tlsResources(options.tls) : undefined;
  const config: Record<string, unknown> = {
    ...image.config,
    deviceId: options.deviceId,
    token: options.token,
    mqttHost: broker.host,
    mqttPort: broker.port,
    ...tls?.config,
  };
  const resources = tls?.resources ?? new Map<string, Buffer>();
  if (options.sampleIntervalMs !== undefined) config.sampleIntervalMs = options.sampleIntervalMs;
  if (options.samplesPerBatch !== undefined) config.samplesPerBatch = options.samplesPerBatch;

  // The board is wired the way the firmware is configured: sensor bus pins and address.
  const bus = new I2cBus({ sda: configInteger(config, "sda"), scl: configInteger(config, "scl") });
  const bmp280 = new Bmp280Model({ seed: options.seed ?? seedFrom(options.deviceId), now: () => clock.now() });
  bus.attach(configInteger(config, "bmp280Address"), bmp280);

  let markConnected: () => void = () => undefined;
  const connected = new Promise<void>((resolve) => {
    markConnected = resolve;
  });
  // The running machine; replaced at every restart. Events go to the one booting, which queues them.
  let machine: XsMachine | undefined;
  const mqttBridge = new MqttBridge((id, data) => {
    if (!machine) return;
    const delivered = machine.post("mqtt", id, data);
    if (data.type === "ready") void delivered.then(markConnected);
  }, logger);
  const gpio = new GpioModel(() => clock.now());

  let restarts = 0;
  let restarting: Promise<void> | undefined;
  let stopped = false;
  const system = {
    handle(op: string): unknown {
      if (op !== "restart") throw new Error(`unknown system operation ${op}`);
      // The machine is inside the host call: it is replaced once that crank has returned.
      restarting ??= (async () => {
        await machine?.stop();
        mqttBridge.powerOff();
        gpio.reset();
        ports.i2c.reset();
        if (stopped) return;
        restarts++;
        logger.info({ device: options.deviceId, restarts }, "simulated device restarting");
        await boot();
      })()
        .catch((error: unknown) => {
          logger.error({ device: options.deviceId, err: String(error) }, "simulated device failed to restart");
        })
        .finally(() => {
          restarting = undefined;
        });
      return undefined;
    },
  };

  const modules = new Map<string, MachineModule>(image.modules);
  modules.set("mc/config", { source: `export default Object.freeze(${JSON.stringify(config)});`, host: false });
  const flash = new FlashPartition({
    name: String(config.flashPartition),
    file: join(options.stateDir, `${options.deviceId}.flash.bin`),
    byteLength: options.flashBytes ?? DEFAULT_FLASH_BYTES,
  });
  const ports = {
    flash,
    resource: {
      handle(op: string, args: Record<string, unknown>): unknown {
        const bytes = resources.get(String(args.path));
        if (op === "exists") return bytes !== undefined;
        if (op === "read") return bytes === undefined ? undefined : Array.from(bytes);
        throw new Error(`unknown resource operation ${op}`);
      },
    },
    i2c: new I2cPort([bus]),
    preference: new PreferenceStore(join(options.stateDir, `${options.deviceId}.preferences.json`)),
    mqtt: mqttBridge,
    gpio,
    system,
  };
  const boot = async (): Promise<XsMachine> => {
    const next: XsMachine = new XsMachine({
      name: options.deviceId,
      clock,
      logger,
      runtimeFile: image.runtimeFile,
      modules,
      entry: "main",
      ports,
    });
    machine = next;
    try {
      await next.start();
    } catch (error) {
      mqttBridge.powerOff();
      flash.close();
      throw error;
    }
    return next;
  };
  const first = await boot();
  return {
    deviceId: options.deviceId,
    bmp280,
    gpio,
    get restarts() {
      return restarts;
    },
    connected,
    meters: () => (machine ?? first).meters(),
    async stop() {
      stopped = true;
      await restarting;
      await machine?.stop();
      mqttBridge.powerOff();
      flash.close();
    },
  };
}
