// A simulated Kestrel device: the compiled firmware running in XS on a board with one I2C bus (a
// BMP280 model at the configured address), flash preferences in a state directory, and a network
// path to an MQTT broker. A restart (the firmware's System.restart) replaces the XS machine and keeps
// the flash, as a chip reset does.

import { createPrivateKey, X509Certificate } from "node:crypto";
import { join } from "node:path";
import { buildEsp32Image } from "@kestrel/wire/esp32-image";
import { parseSensorList } from "../src/sensor-config.ts";
import { AppPartitions, type BootedImage, OTA_IMAGE_STATES, type OtaImageState } from "./app-partitions.ts";
import { Bmp280Model } from "./bmp280-model.ts";
import { RealTimeClock, type SimClock } from "./clock.ts";
import { CryptoPort, nodeSha256 } from "./crypto.ts";
import { busTarget, FaultSet, type PowerLossOptions } from "./faults.ts";
import { loadFirmwareImage } from "./firmware-image.ts";
import { FLASH_SECTOR_BYTES, FlashPartition } from "./flash.ts";
import { GpioModel } from "./gpio.ts";
import { I2cBus, I2cPort, type I2cTarget } from "./i2c-bus.ts";
import { type SimLogger, silentLogger } from "./logger.ts";
import { Ads1115Model } from "./models/ads1115-model.ts";
import { Bme280Model } from "./models/bme280-model.ts";
import { BoschSpiAdapter } from "./models/bosch-spi.ts";
import { Dht22Model, PulsePort } from "./models/dht22-model.ts";
import { Mpu6050Model } from "./models/mpu6050-model.ts";
import { Sht3xModel, Sht4xModel } from "./models/sensirion-model.ts";
import { MqttBridge } from "./mqtt-bridge.ts";
import { PreferenceStore } from "./preferences.ts";
import { SpiBus, SpiPort } from "./spi-bus.ts";
import { type HostPort, type MachineModule, XsMachine, type XsMeters } from "./xs-machine.ts";

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
  /**
   * Holds `<deviceId>.preferences.json` (NVS), `<deviceId>.flash.bin` (the partition of unsent
   * batches) and `<deviceId>.log.bin` (the log ring's partition).
   */
  stateDir: string;
  /** Size of the data partition holding unsent batches; 128 KiB (32 sectors) unless given. */
  flashBytes?: number;
  /** Size of the log ring's partition; 64 KiB (16 sectors) unless given. */
  logFlashBytes?: number;
  /** Size of the plugins' partition (`<deviceId>.plugins.bin`); 128 KiB (eight 16 KiB slots) unless given. */
  pluginFlashBytes?: number;
  sampleIntervalMs?: number;
  samplesPerBatch?: number;
  /** Manifest config entries to override, as `mcconfig name=value` would (e.g. watchdogTimeoutMs). */
  settings?: Readonly<Record<string, string | number>>;
  /**
   * Everything random in the run: the sensor models' trajectory and noise, the firmware's
   * Math.random (reconnect jitter) and fault randomness. Derived from deviceId when omitted.
   */
  seed?: number;
  logger?: SimLogger;
  /** Real time unless given. */
  clock?: SimClock;
  /**
   * The sensors wired on the simulated board, in the syntax of config `sensors` ("sht3x@0x44,...");
   * what the firmware is configured with when omitted (a set-config `sensors` can then differ).
   */
  board?: string;
  /** The signal of the access point the board's Wi-Fi station is associated with, dBm; -58 unless given. */
  wifiRssi?: number;
  /** The version of the image flashed at the factory into ota_0 (its esp_app_desc_t); 0.1.0 unless given. */
  firmwareVersion?: string;
  /** Size of each of the two OTA app partitions (`<deviceId>.ota_0.bin`, `.ota_1.bin`); as partitions.csv unless given. */
  appPartitionBytes?: number;
}

/** What the running app partition holds, as the bootloader found it. */
export interface RunningImage {
  slot: 0 | 1;
  version: string;
  projectName: string;
  state: OtaImageState;
}

/**
 * Test-only identities an image can carry in esp_app_desc_t.project_name. The simulator boots the same
 * compiled firmware for every image, with the image's version; these make it misbehave as a broken
 * build would: crash at boot (a panic before the app runs), or boot but never reach its gateway
 * (its health check fails).
 */
export const SIM_IMAGE_MARKERS = Object.freeze({
  crashAtBoot: "kestrel-sim:crash-at-boot",
  unhealthy: "kestrel-sim:unhealthy",
});
/** How long a crashing image runs before its panic. */
const CRASH_AFTER_MS = 50;

export interface SimDevice {
  deviceId: string;
  bmp280: Bmp280Model;
  /**
   * Every model on the I2C bus by address: the BMP280 and the further sensors the manifest config
   * `sensors` lists (set it through the settings option, e.g. { sensors: "bmp280@0x76,sht3x@0x44" }).
   */
  models: ReadonlyMap<number, I2cTarget>;
  /** Models on the SPI bus by select pin (`bme280@spi:5` in the list). */
  spiModels: ReadonlyMap<number, I2cTarget>;
  /** The DHT22 models by data pin (`dht22@<pin>` in the list). */
  dht22: ReadonlyMap<number, Dht22Model>;
  /** Levels the firmware drove on the board's pins (the status LED), across restarts. */
  gpio: GpioModel;
  /** Resets since power-on: restarts the firmware asked for, and hardware watchdog or crash resets. */
  readonly restarts: number;
  /**
   * Makes a firmware subsystem hang until the next reset, or across resets with acrossResets (a
   * boot loop): it skips its work and its watchdog heartbeat, or with spin it never returns, which
   * blocks the main loop until the hardware watchdog model resets the chip.
   */
  hang(subsystem: string, options?: { acrossResets?: boolean; spin?: boolean }): void;
  /** Power off: the firmware stops and its sockets drop without DISCONNECT (the broker sends the will). */
  stop(): Promise<void>;
  meters(): XsMeters;
  /** A full garbage collection in the engine first, so heapSlots counts live slots only. */
  collect(): Promise<XsMeters>;
  /** Resolves once the firmware's MQTT client has handled its first onReady. */
  connected: Promise<void>;
  /** Hardware, power and clock faults (a hung subsystem is hang() above). */
  faults: SimFaults;
  /** Power cuts (faults.powerLoss) the device has been through. */
  readonly powerCycles: number;
  /** The image running now (after the last boot). */
  readonly image: RunningImage;
  /** Every image booted since power-on, in order (a crash-and-rollback shows both). */
  readonly boots: readonly RunningImage[];
}

/** Faults to inject into a running device; each lasts until cleared. */
export interface SimFaults {
  /** The I2C device at address stops acknowledging (unplugged, dead): every transaction NACKs. */
  disconnectSensor(address: number, disconnected?: boolean): void;
  /** SDA held low: every transaction on the I2C bus times out. */
  stickBus(stuck?: boolean): void;
  /** Reads from the I2C device at address get a seeded random bit flip, with this probability (0 ends it). */
  corruptReads(address: number, probability?: number): void;
  /** Moves the device's wall clock (Date) by deltaMs, forwards or back; timers and ticks are unaffected. */
  jumpClock(deltaMs: number): void;
  /**
   * Cuts the power: the engine dies mid-work, sockets drop without DISCONNECT, and the device boots
   * again after offMs with what flash and preferences hold. Resolves once it is back up (at once
   * when armed for a later flash write).
   */
  powerLoss(options?: PowerLossOptions): Promise<void>;
  /**
   * The firmware's next telemetry publish is taken by its mqtt client but never reaches the broker,
   * and the connection drops: the batch was in the socket's send buffer when the link failed.
   */
  dropLinkAfterPublish(): void;
  /**
   * The link drops just before each of these artifact chunks (counted from now, 1: the next) would
   * reach the firmware: a download cut at those points.
   */
  dropLinkAtChunks(...chunks: number[]): void;
  /** The fault set models consult, for models added later (kinds and targets in faults.ts). */
  readonly set: FaultSet;
}

const DEFAULT_FLASH_BYTES = 128 * 1024;
/** The version the factory-flashed image carries when the options name none: the firmware package's. */
const FACTORY_VERSION = "0.1.0";

const DEFAULT_LOG_FLASH_BYTES = 64 * 1024;
/** An XS slot is 16 bytes on the ESP32 (32-bit XS), 32 on this 64-bit host: the heap is reported as the chip would. */
const ESP32_SLOT_BYTES = 16;
const DEFAULT_WIFI_RSSI = -58;
const DEFAULT_PLUGIN_FLASH_BYTES = 128 * 1024;

/** esp_reset_reason() codes the simulated chip reports, as Moddable's resetReason module does. */
const RESET_CAUSES = Object.freeze({
  powerOn: { reason: 1, string: "Power-On" },
  software: { reason: 3, string: "Software" },
  panic: { reason: 4, string: "Panic" },
  taskWatchdog: { reason: 6, string: "Task WDT" },
});
type ResetCause = (typeof RESET_CAUSES)[keyof typeof RESET_CAUSES];
/** What xsnap reports when a crank exceeds its metering limit: a blocked main loop. */
const BLOCKED_LOOP = /too much computation/;

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

/** Wires the models of the sensors the configuration lists (a BMP280 at bmp280Address when none). */
function attachSensorModels(
  bus: I2cBus,
  oneWire: PulsePort,
  spiBus: SpiBus,
  board: string,
  bmp280Address: number,
  bmp280: Bmp280Model,
  seed: number,
  now: () => number,
): { models: Map<number, I2cTarget>; spiModels: Map<number, I2cTarget>; dht22: Map<number, Dht22Model> } {
  const listed = parseSensorList(board);
  const specs = listed.length > 0 ? listed : [{ kind: "bmp280" as const, bus: "i2c" as const, address: bmp280Address }];
  const models = new Map<number, I2cTarget>();
  const dht22 = new Map<number, Dht22Model>();
  const spiModels = new Map<number, I2cTarget>();
  for (const { kind, bus: where, address } of specs) {
    const options = { seed: seed + address, now };
    let model: I2cTarget | undefined;
    if (kind === "bmp280") model = bmp280;
    else if (kind === "bme280") model = new Bme280Model(options);
    else if (kind === "sht3x") model = new Sht3xModel({ ...options, address });
    else if (kind === "sht4x") model = new Sht4xModel({ ...options, address });
    else if (kind === "ads1115") model = new Ads1115Model(options);
    else if (kind === "mpu6050") model = new Mpu6050Model(options);
    else {
      // A DHT22 sits on a pin (its "address"), not on the bus.
      const sensor = new Dht22Model(options);
      oneWire.attach(address, sensor);
      dht22.set(address, sensor);
      continue;
    }
    if (where === "spi") {
      // The same register model behind the SPI control-byte protocol, on its select pin.
      spiBus.attach(address, new BoschSpiAdapter(model));
      spiModels.set(address, model);
      continue;
    }
    bus.attach(address, model);
    models.set(address, model);
  }
  return { models, spiModels, dht22 };
}

export async function startSimDevice(options: SimDeviceOptions): Promise<SimDevice> {
  const logger = options.logger ?? silentLogger;
  const clock: SimClock = options.clock ?? new RealTimeClock();
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
  Object.assign(config, options.settings);

  // The board is wired the way the firmware is configured: sensor bus pins and address.
  const seed = options.seed ?? seedFrom(options.deviceId);
  const faultSet = new FaultSet(seed);
  const bus = new I2cBus({ sda: configInteger(config, "sda"), scl: configInteger(config, "scl") }, faultSet);
  const bmp280 = new Bmp280Model({ seed, now: () => clock.now() });
  const board = options.board ?? (typeof config.sensors === "string" ? config.sensors : "");
  const oneWire = new PulsePort(faultSet);
  const spiBus = new SpiBus(
    {
      in: configInteger(config, "spiIn"),
      out: configInteger(config, "spiOut"),
      clock: configInteger(config, "spiClock"),
    },
    faultSet,
  );
  const { models, spiModels, dht22 } = attachSensorModels(
    bus,
    oneWire,
    spiBus,
    board,
    configInteger(config, "bmp280Address"),
    bmp280,
    seed,
    () => clock.now(),
  );

  let markConnected: () => void = () => undefined;
  const connected = new Promise<void>((resolve) => {
    markConnected = resolve;
  });
  // The running machine; replaced at every restart. Events go to the one booting, which queues them.
  let machine: XsMachine | undefined;
  const hold = (): (() => void) => clock.hold?.() ?? (() => undefined);
  const mqttBridge = new MqttBridge(
    (id, data) => {
      if (!machine) return;
      const delivered = machine.post("mqtt", id, data);
      if (data.type === "ready") void delivered.then(markConnected);
    },
    logger,
    hold,
    faultSet,
  );
  const gpio = new GpioModel(() => clock.now());
  // Input edges reach the running firmware as interrupts do: as events on its main loop.
  gpio.onEdge = (pin) => void machine?.post("gpio", pin, {});

  let restarts = 0;
  let powerCycles = 0;
  let boots = 0;
  let restarting: Promise<void> | undefined;
  let stopped = false;
  let resetCause: ResetCause = RESET_CAUSES.powerOn;
  const hung = new Map<string, { acrossResets: boolean; spin: boolean }>();
  /** What goes dark with the chip: its link and every board model's pending state. */
  const powerDownBoard = (): void => {
    mqttBridge.powerOff();
    crypto.reset();
    gpio.reset();
    ports.i2c.reset();
    ports.pulse.reset();
    ports.spi.reset();
  };
  const reset = (cause: ResetCause): void => {
    // The machine may be inside a host call: it is replaced once that crank has returned.
    if (restarting) return;
    const release = hold();
    restarting = (async () => {
      await machine?.stop();
      powerDownBoard();
      if (stopped) return;
      restarts++;
      resetCause = cause;
      for (const [subsystem, fault] of hung) if (!fault.acrossResets) hung.delete(subsystem);
      logger.info({ device: options.deviceId, restarts, cause: cause.string }, "simulated device restarting");
      await boot();
    })()
      .catch((error: unknown) => {
        logger.error({ device: options.deviceId, err: String(error) }, "simulated device failed to restart");
      })
      .finally(() => {
        restarting = undefined;
        release();
      });
  };

  /** The engine is killed where it stands (mid-crank, mid-write), then the board powers up again. */
  const powerCycle = (offMs: number): Promise<void> => {
    if (restarting) return restarting;
    let release = hold();
    restarting = (async () => {
      await machine?.kill();
      powerDownBoard();
      if (stopped) return;
      powerCycles++;
      logger.info({ device: options.deviceId, powerCycles, offMs }, "simulated power loss");
      release();
      await clock.sleep(offMs);
      release = hold();
      if (stopped) return;
      await boot();
    })()
      .catch((error: unknown) => {
        logger.error({ device: options.deviceId, err: String(error) }, "simulated device failed to power up");
      })
      .finally(() => {
        restarting = undefined;
        release();
      });
    return restarting;
  };
  const wifiRssi = options.wifiRssi ?? DEFAULT_WIFI_RSSI;
  const system = {
    handle(op: string): unknown {
      if (op === "resetReason") return resetCause;
      if (op !== "restart") throw new Error(`unknown system operation ${op}`);
      reset(RESET_CAUSES.software);
      return undefined;
    },
  };
  const faults = {
    handle(op: string, args: Record<string, unknown>): unknown {
      if (op !== "hung") throw new Error(`unknown faults operation ${op}`);
      const hang = hung.get(String(args.subsystem));
      return hang === undefined ? false : hang.spin ? "spin" : "skip";
    },
  };

  const modules = new Map<string, MachineModule>(image.modules);
  modules.set("mc/config", { source: `export default Object.freeze(${JSON.stringify(config)});`, host: false });
  const flash = new FlashPartition({
    name: String(config.flashPartition),
    file: join(options.stateDir, `${options.deviceId}.flash.bin`),
    byteLength: options.flashBytes ?? DEFAULT_FLASH_BYTES,
  });
  const logFlash = new FlashPartition({
    name: String(config.logPartition),
    file: join(options.stateDir, `${options.deviceId}.log.bin`),
    byteLength: options.logFlashBytes ?? DEFAULT_LOG_FLASH_BYTES,
  });
  const pluginFlash = new FlashPartition({
    name: String(config.pluginPartition),
    file: join(options.stateDir, `${options.deviceId}.plugins.bin`),
    byteLength: options.pluginFlashBytes ?? DEFAULT_PLUGIN_FLASH_BYTES,
  });
  const partitions = [flash, logFlash, pluginFlash];
  // The chip's data partitions by name; an unknown name fails as it does on a device.
  const partitionOf = (args: Record<string, unknown>): FlashPartition =>
    partitions.find((partition) => partition.name === args.partition) ?? flash;
  const apps = new AppPartitions({
    dir: options.stateDir,
    deviceId: options.deviceId,
    ...(options.appPartitionBytes === undefined ? {} : { byteLength: options.appPartitionBytes }),
    factoryImage: () =>
      buildEsp32Image(
        { chip: String(config.chip), version: options.firmwareVersion ?? FACTORY_VERSION, projectName: "kestrel" },
        nodeSha256,
      ),
  });
  let running: BootedImage | undefined;
  const booted: RunningImage[] = [];
  const crypto = new CryptoPort();
  /** Moddable's flash module on the app partitions ("running", "nextota"), which its OTA resume reads back. */
  const appFlash = (op: string, args: Record<string, unknown>): unknown => {
    const slot = apps.slotOf(String(args.partition)) as 0 | 1;
    switch (op) {
      case "open":
        return { byteLength: apps.byteLength, blockSize: FLASH_SECTOR_BYTES };
      case "read":
        return Array.from(apps.read(slot, Number(args.offset), Number(args.byteLength)));
      case "erase":
        apps.erase(slot, Number(args.sector));
        return undefined;
      case "write":
        apps.program(slot, Number(args.offset), Uint8Array.from(args.bytes as number[]));
        return undefined;
      default:
        throw new Error(`unknown flash operation ${op}`);
    }
  };
  // A flash write armed for power loss reaches the chip only in part (NOR programs byte by byte).
  const flashPort: HostPort = {
    handle(op: string, args: Record<string, unknown>): unknown {
      if (apps.slotOf(String(args.partition)) !== undefined) return appFlash(op, args);
      const offMs = op === "write" ? faultSet.takePowerLoss() : undefined;
      if (offMs === undefined) return partitionOf(args).handle(op, args);
      const bytes = Array.isArray(args.bytes) ? (args.bytes as number[]) : [];
      const kept = Math.floor(faultSet.random() * bytes.length);
      if (kept > 0) partitionOf(args).handle(op, { ...args, bytes: bytes.slice(0, kept) });
      logger.info({ device: options.deviceId, offset: args.offset, kept, of: bytes.length }, "flash write torn");
      // The engine waits on this call; its answer never arrives because the engine is gone by then.
      return powerCycle(offMs);
    },
  };
  /** Moddable's `ota` module: writes armed for power loss tear like flash writes. */
  const otaPort: HostPort = {
    handle(op: string, args: Record<string, unknown>): unknown {
      switch (op) {
        case "begin":
          apps.begin();
          return undefined;
        case "write": {
          const bytes = Uint8Array.from(args.bytes as number[]);
          const offMs = faultSet.takePowerLoss("ota");
          if (offMs === undefined) {
            apps.write(bytes);
            return undefined;
          }
          const kept = Math.floor(faultSet.random() * bytes.length);
          apps.write(bytes, kept);
          logger.info({ device: options.deviceId, kept, of: bytes.length }, "ota write torn");
          return powerCycle(offMs);
        }
        case "cancel":
          apps.cancel();
          return undefined;
        case "complete":
          apps.complete();
          return undefined;
        default:
          throw new Error(`unknown ota operation ${op}`);
      }
    },
  };
  /** kestrel/ota-rollback: the running image and the two rollback calls. */
  const imagePort: HostPort = {
    handle(op: string): unknown {
      switch (op) {
        case "version":
          return running?.app.version ?? "";
        case "state":
          return OTA_IMAGE_STATES[apps.runningState];
        case "lastInvalid":
          return apps.lastInvalidVersion();
        case "markValid":
          apps.markValid();
          return undefined;
        case "rollback":
          apps.markInvalidForRollback();
          reset(RESET_CAUSES.software);
          return undefined;
        default:
          throw new Error(`unknown image operation ${op}`);
      }
    },
  };
  const ports = {
    flash: flashPort,
    ota: otaPort,
    image: imagePort,
    crypto,
    resource: {
      handle(op: string, args: Record<string, unknown>): unknown {
        const bytes = resources.get(String(args.path));
        if (op === "exists") return bytes !== undefined;
        if (op === "read") return bytes === undefined ? undefined : Array.from(bytes);
        throw new Error(`unknown resource operation ${op}`);
      },
    },
    i2c: new I2cPort([bus]),
    pulse: oneWire,
    spi: new SpiPort([spiBus]),
    preference: new PreferenceStore(join(options.stateDir, `${options.deviceId}.preferences.json`)),
    mqtt: mqttBridge,
    gpio,
    system,
    faults,
    instrumentation: {
      handle(op: string, args: Record<string, unknown>): unknown {
        if (op !== "get") throw new Error(`unknown instrumentation operation ${op}`);
        // The engine meters slots (as of the last crank); xsnap does not meter the chunk heap.
        const slots = machine?.meters().heapSlots;
        return args.name === "XS Slot Heap Used" && slots !== undefined ? slots * ESP32_SLOT_BYTES : undefined;
      },
    },
    net: {
      handle(op: string, args: Record<string, unknown>): unknown {
        if (op !== "get") throw new Error(`unknown net operation ${op}`);
        return args.what === "RSSI" ? wifiRssi : undefined;
      },
    },
  };
  /** The bootloader picks an image; a crashing one panics before the firmware runs. */
  const boot = async (): Promise<void> => {
    running = apps.boot();
    const { slot, app, state } = running;
    booted.push({ slot, version: app.version, projectName: app.projectName, state });
    if (app.projectName === SIM_IMAGE_MARKERS.crashAtBoot) {
      machine = undefined;
      logger.warn({ device: options.deviceId, version: app.version }, "simulated image crashes at boot");
      void clock.sleep(CRASH_AFTER_MS).then(() => reset(RESET_CAUSES.panic));
      return;
    }
    mqttBridge.refuseConnections = app.projectName === SIM_IMAGE_MARKERS.unhealthy;
    const next: XsMachine = new XsMachine({
      name: options.deviceId,
      clock,
      logger,
      runtimeFile: image.runtimeFile,
      modules,
      entry: "main",
      ports,
      // A new seed per boot: a reboot does not replay the previous boot's jitter.
      seed: (seed + boots++ * 0x9e3779b9) >>> 0,
      wallOffset: () => faultSet.wallOffsetMs,
      // The hardware watchdog model: a crank that never ends is a main loop that stopped feeding it.
      onHalt: (reason) => reset(BLOCKED_LOOP.test(reason) ? RESET_CAUSES.taskWatchdog : RESET_CAUSES.panic),
    });
    machine = next;
    try {
      await next.start();
    } catch (error) {
      mqttBridge.powerOff();
      for (const partition of partitions) partition.close();
      apps.close();
      throw error;
    }
  };
  await boot();
  const first = machine as XsMachine | undefined;
  if (!first) throw new Error(`${options.deviceId}: the image in the boot partition crashed at power-on`);
  return {
    deviceId: options.deviceId,
    bmp280,
    models,
    spiModels,
    dht22,
    gpio,
    get restarts() {
      return restarts;
    },
    hang(subsystem, faultOptions) {
      hung.set(subsystem, { acrossResets: faultOptions?.acrossResets ?? false, spin: faultOptions?.spin ?? false });
    },
    connected,
    meters: () => (machine ?? first).meters(),
    collect: () => (machine ?? first).collect(),
    get powerCycles() {
      return powerCycles;
    },
    get image() {
      return booted.at(-1) as RunningImage;
    },
    boots: booted,
    faults: {
      set: faultSet,
      disconnectSensor(address, disconnected = true) {
        if (disconnected) faultSet.set("disconnect", busTarget(bus.name, address));
        else faultSet.clear("disconnect", busTarget(bus.name, address));
      },
      stickBus(stuck = true) {
        if (stuck) faultSet.set("stuck", bus.name);
        else faultSet.clear("stuck", bus.name);
      },
      corruptReads(address, probability = 1) {
        if (probability > 0) faultSet.set("corrupt", busTarget(bus.name, address), probability);
        else faultSet.clear("corrupt", busTarget(bus.name, address));
      },
      jumpClock(deltaMs) {
        faultSet.wallOffsetMs += deltaMs;
      },
      dropLinkAfterPublish() {
        faultSet.armLinkDropAfterPublish();
      },
      dropLinkAtChunks(...chunks) {
        faultSet.armLinkDropAtChunks(chunks);
      },
      async powerLoss(powerLoss = {}) {
        const offMs = powerLoss.offMs ?? 1000;
        if (powerLoss.atFlashWrite !== undefined) faultSet.armPowerLoss(powerLoss.atFlashWrite, offMs);
        else if (powerLoss.atOtaWrite !== undefined) faultSet.armPowerLoss(powerLoss.atOtaWrite, offMs, "ota");
        else await powerCycle(offMs);
      },
    },
    async stop() {
      stopped = true;
      await restarting;
      await machine?.stop();
      mqttBridge.powerOff();
      for (const partition of partitions) partition.close();
      apps.close();
    },
  };
}
