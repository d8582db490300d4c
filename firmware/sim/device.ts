// A simulated Kestrel device: the compiled firmware running in XS on a board with one I2C bus (a
// BMP280 model at the configured address), flash preferences in a state directory, and a network
// path to an MQTT broker.

import { join } from "node:path";
import { Bmp280Model } from "./bmp280-model.ts";
import { RealTimeClock, type SimClock } from "./clock.ts";
import { loadFirmwareImage } from "./firmware-image.ts";
import { I2cBus, I2cPort } from "./i2c-bus.ts";
import { type SimLogger, silentLogger } from "./logger.ts";
import { MqttBridge } from "./mqtt-bridge.ts";
import { PreferenceStore } from "./preferences.ts";
import { type MachineModule, XsMachine, type XsMeters } from "./xs-machine.ts";

export interface SimDeviceOptions {
  deviceId: string;
  token: string;
  /** mqtt://127.0.0.1:PORT */
  mqttUrl: string;
  /** Holds `<deviceId>.preferences.json` (the device's flash). */
  stateDir: string;
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
  /** Power off: the firmware stops and its sockets drop without DISCONNECT (the broker sends the will). */
  stop(): Promise<void>;
  meters(): XsMeters;
  /** Resolves once the firmware's MQTT client has handled its first onReady. */
  connected: Promise<void>;
}

/** FNV-1a, so every device id gets its own weather. */
function seedFrom(text: string): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) hash = Math.imul(hash ^ text.charCodeAt(i), 0x01000193);
  return hash >>> 0;
}

function brokerAddress(mqttUrl: string): { host: string; port: number } {
  const url = new URL(mqttUrl);
  if (url.protocol !== "mqtt:") throw new Error(`mqttUrl must be mqtt://host:port, got ${mqttUrl}`);
  return { host: url.hostname, port: url.port === "" ? 1883 : Number(url.port) };
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
  const config: Record<string, unknown> = {
    ...image.config,
    deviceId: options.deviceId,
    token: options.token,
    mqttHost: broker.host,
    mqttPort: broker.port,
  };
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
  const mqttBridge = new MqttBridge((id, data) => {
    const delivered = machine.post("mqtt", id, data);
    if (data.type === "ready") void delivered.then(markConnected);
  }, logger);

  const modules = new Map<string, MachineModule>(image.modules);
  modules.set("mc/config", { source: `export default Object.freeze(${JSON.stringify(config)});`, host: false });
  const machine: XsMachine = new XsMachine({
    name: options.deviceId,
    clock,
    logger,
    runtimeFile: image.runtimeFile,
    modules,
    entry: "main",
    ports: {
      i2c: new I2cPort([bus]),
      preference: new PreferenceStore(join(options.stateDir, `${options.deviceId}.preferences.json`)),
      mqtt: mqttBridge,
    },
  });
  try {
    await machine.start();
  } catch (error) {
    mqttBridge.powerOff();
    throw error;
  }
  return {
    deviceId: options.deviceId,
    bmp280,
    connected,
    meters: () => machine.meters(),
    async stop() {
      await machine.stop();
      mqttBridge.powerOff();
    },
  };
}
