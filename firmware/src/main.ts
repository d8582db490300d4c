// The Kestrel device application: counts boots in flash, samples the configured sensors every interval, batches
// readings into TelemetryBatch payloads and publishes them over MQTT from a ring in flash that keeps each
// batch until the gateway's telemetry ack confirms it (sent again after a lost link or a missing ack),
// reconnecting with exponential backoff. Executes the commands it receives on d/{id}/cmd, and installs
// the signed artifacts (firmware updates) its gateway offers (kestrel/artifact-update).

import Resource from "Resource";
import {
  CLOCK_VALID_FROM_MS,
  type DeviceCommand,
  type DeviceState,
  OFFLINE_STATE,
  parseTelemetryAck,
  topics,
  WIRE_VERSION,
} from "@kestrel/wire";
import Instrumentation from "instrumentation";
import ArtifactUpdater, { type OtaSettings, readOtaSettings } from "kestrel/artifact-update";
import CommandHandler, { type CommandOutcome } from "kestrel/commands";
import Faults from "kestrel/faults";
import FlashRing, { IN_FLIGHT_MAX } from "kestrel/flash-ring";
import Log, { describeError } from "kestrel/log";
import LogShipper from "kestrel/log-shipper";
import { runningVersion } from "kestrel/ota-rollback";
import Plugins, { parseTrustedKeys } from "kestrel/plugins";
import PulseCapture from "kestrel/pulse-capture";
import { type BootReport, forgiveResets, markDeliberateReset, takeBootReport } from "kestrel/reset";
import { parseSensorList, type SensorSpec } from "kestrel/sensor-config";
import SensorSet, { scanI2c } from "kestrel/sensor-set";
import {
  applyConfigParams,
  configParams,
  type DeviceSettings,
  parseRuntimeConfig,
  type RuntimeConfig,
  readSettings,
} from "kestrel/settings";
import StatusLed from "kestrel/status-led";
import TelemetryBatcher, { batchBoot, batchLastSeq, samplesPerBatchFor } from "kestrel/telemetry";
import Watchdog from "kestrel/watchdog";
import config from "mc/config";
import Client from "mqtt";
// biome-ignore lint/style/useNodejsImportProtocol: Moddable's net module (modules/network/net), not Node's.
import Net from "net";
import Preference from "preference";
import SecureSocket from "securesocket";
// Sets the global System (restart); the module has no exports.
import "system";
import Time from "time";
import Timer from "timer";

const PREFERENCE_DOMAIN = "kestrel";
const BOOT_KEY = "boot";
const CONFIG_KEY = "config";
/** Log shipping: a batch a second at most (only while records wait), a record a second on average, bursts of 20. */
const LOG_SHIP_MS = 1_000;
const LOG_RATE = { perSecond: 1, burst: 20, perBatch: 10 } as const;
const LOG_PUBLISH = { quality: 1 } as const;
/** Lets the done ack of a reboot leave the socket before the chip resets. */
const REBOOT_DELAY_MS = 500;
const IDENTIFY_DEFAULT_S = 5;
const IDENTIFY_MAX_S = 60;
const KEEPALIVE_MS = 30_000;
const RECONNECT_MIN_MS = 1_000;
const RECONNECT_MAX_MS = 60_000;
/** A lasting condition (clock not set) is logged at its first occurrence, then every this many samples. */
const CLOCK_LOG_EVERY = 60;
/**
 * Moddable's MQTT client writes straight into the socket and reports no back-pressure, so a long
 * flash buffer is sent a few batches at a time with a pause between turns.
 */
const FLUSH_BATCHES_PER_TURN = 4;
const FLUSH_PAUSE_MS = 100;
/**
 * Batches in flight this long with no telemetry ack confirming any are sent again: the QoS 0 ack was
 * lost, or the gateway restarted behind an external broker while the connection stayed up.
 */
const ACK_TIMEOUT_MS = 30_000;
/** What Moddable's lwIP socket throws when a message does not fit the free TCP send buffer. */
const SEND_BUFFER_FULL = "can't write all data";

/** The newest TLS version Moddable's securesocket implements. */
const TLS_1_2 = 0x0303;
const TELEMETRY_PUBLISH = { quality: 1 } as const;
const STATE_PUBLISH = { quality: 1, retain: true } as const;
const ACK_PUBLISH = { quality: 1 } as const;
const ARTIFACT_PUBLISH = { quality: 1 } as const;

function hexAddress(address: number): string {
  return `0x${address.toString(16).padStart(2, "0")}`;
}

function openBuffer(partition: string, log: Log): FlashRing | undefined {
  try {
    const buffer = new FlashRing(partition);
    if (buffer.size > 0) log.write("info", "flash buffer holds unconfirmed batches", { queued: buffer.size });
    return buffer;
  } catch (error) {
    log.write("error", "flash buffer unavailable, batches are sent once, unconfirmed", { error: describeError(error) });
    return undefined;
  }
}

/** The flash log ring, attached as the log sink; undefined (console only) when the partition is unusable. */
function openLogShipper(partition: string, log: Log): LogShipper | undefined {
  try {
    const shipper = new LogShipper(partition, LOG_RATE);
    log.setSink(shipper.append);
    return shipper;
  } catch (error) {
    log.write("error", "log ring unavailable, logs stay on the console", { error: describeError(error) }, "log");
    return undefined;
  }
}

/** The plugin host, or undefined (no plugins run) when it has no partition or its keys are unusable. */
function openPlugins(
  settings: DeviceSettings,
  sensorNames: readonly string[],
  onChange: () => void,
  log: Log,
): Plugins | undefined {
  if (settings.pluginPartition === "") return undefined;
  try {
    const trustedKeys = parseTrustedKeys(settings.pluginKeys);
    return new Plugins({ partition: settings.pluginPartition, trustedKeys, sensorNames, onChange, log });
  } catch (error) {
    log.write("error", "plugins unavailable", { error: describeError(error) }, "plugin");
    return undefined;
  }
}

function loadRuntimeConfig(settings: DeviceSettings, log: Log): RuntimeConfig {
  const defaults: RuntimeConfig = { sampleIntervalMs: settings.sampleIntervalMs, logLevel: "info" };
  let saved: unknown;
  try {
    saved = Preference.get(PREFERENCE_DOMAIN, CONFIG_KEY);
  } catch (error) {
    log.write("warn", "saved configuration unreadable", { error: describeError(error) });
  }
  return parseRuntimeConfig(saved, defaults) ?? defaults;
}

/** Increments the boot counter kept in flash; (deviceId, boot, seq) identifies a sample everywhere. */
function countBoot(log: Log): number {
  try {
    const previous = Preference.get(PREFERENCE_DOMAIN, BOOT_KEY);
    const boot = (typeof previous === "number" && previous >= 0 ? previous : 0) + 1;
    Preference.set(PREFERENCE_DOMAIN, BOOT_KEY, boot);
    return boot;
  } catch (error) {
    // Boot 0 marks "counter unavailable"; the data still flows, at the risk of deduplication.
    log.write("error", "boot counter unavailable", { error: describeError(error) });
    return 0;
  }
}

class Device {
  readonly #settings: DeviceSettings;
  readonly #boot: number;
  readonly #bootReport: BootReport;
  /** Safe mode: connectivity and commands only, no sampling (after a boot loop). */
  #safeMode: boolean;
  readonly #watchdog: Watchdog;
  readonly #log: Log;
  readonly #logs: LogShipper | undefined;
  readonly #logTopic: string;
  #logTimer: Timer | undefined;
  #config: RuntimeConfig;
  #sampleTimer: Timer | undefined;
  #temperatureAlarm = false;
  readonly #led: StatusLed;
  readonly #commands: CommandHandler;
  readonly #commandTopic: string;
  readonly #ackTopic: string;
  /** Milliseconds the chip has run, and the ticks they were counted up to (see #uptime). */
  #ranMs = Time.ticks;
  #ranTicks = Time.ticks;
  /** Instrumentation slots of the XS heap; undefined in builds without instrumentation (plain release). */
  readonly #slotHeap = Instrumentation.map("XS Slot Heap Used");
  readonly #chunkHeap = Instrumentation.map("XS Chunk Heap Used");
  readonly #telemetryTopic: string;
  readonly #telemetryAckTopic: string;
  readonly #stateTopic: string;
  readonly #offlineState = JSON.stringify(OFFLINE_STATE);
  #sensors: SensorSet;
  #batcher: TelemetryBatcher;
  readonly #plugins: Plugins | undefined;
  readonly #pluginTopic: string;
  /** A sample's row when plugins run: the sensors' values, then the plugins' metrics. */
  #row = new Float64Array(0);
  /** A plugin was stopped while computing the last row: the columns change once it is batched. */
  #pluginStopped = false;
  /** Undefined when the flash partition cannot be used: unsendable batches are then dropped. */
  readonly #buffer: FlashRing | undefined;
  /** Samples dropped without reaching the flash ring (no partition, or a write failed). */
  #droppedUnbuffered = 0;
  #clockWaits = 0;
  #seq = 0;
  #client: Client | undefined;
  #online = false;
  #reconnectDelay = RECONNECT_MIN_MS;
  #reconnectTimer: Timer | undefined;
  #flushTimer: Timer | undefined;
  #ackTimer: Timer | undefined;
  readonly #updater: ArtifactUpdater;
  /** What a new image's health check looks at: the gateway was reached, the sampler ran. */
  #everConnected = false;
  #sampleTicks = 0;

  constructor(
    settings: DeviceSettings,
    boot: number,
    bootReport: BootReport,
    config: RuntimeConfig,
    log: Log,
    logs: LogShipper | undefined,
    ota: OtaSettings,
  ) {
    this.#settings = settings;
    this.#log = log;
    this.#logs = logs;
    this.#logTopic = topics.log(settings.deviceId);
    if (logs) log.setSink(this.#onLogRecord);
    this.#boot = boot;
    this.#bootReport = bootReport;
    this.#safeMode = bootReport.safeMode;
    this.#config = config;
    this.#watchdog = new Watchdog(
      this.#onWatchdogExpired,
      // A stopped subsystem is caught within 1.25 deadlines, without a timer every second.
      Math.floor(settings.watchdogTimeoutMs / 4),
    );
    this.#telemetryTopic = topics.telemetry(settings.deviceId);
    this.#telemetryAckTopic = topics.telemetryAck(settings.deviceId);
    this.#stateTopic = topics.state(settings.deviceId);
    this.#commandTopic = topics.command(settings.deviceId);
    this.#ackTopic = topics.commandAck(settings.deviceId);
    this.#commands = new CommandHandler(this.#execute, this.#sendAck, log);
    this.#led = new StatusLed(settings.ledPin);
    this.#sensors = this.#sensorSet();
    this.#pluginTopic = topics.plugin(settings.deviceId);
    this.#plugins = openPlugins(settings, this.#sensors.names, this.#onPluginsChanged, log);
    this.#batcher = this.#batcherFor(this.#sensors);
    this.#buffer = openBuffer(settings.flashPartition, log);
    this.#updater = new ArtifactUpdater(
      {
        deviceId: settings.deviceId,
        log,
        publish: this.#publishArtifact,
        healthProblem: this.#healthProblem,
        restart: () => System.restart(),
      },
      ota,
    );
  }

  start(): void {
    // Connected, connecting (lwIP and the keep-alive end a dead attempt) or waiting to retry counts as
    // alive: what the watchdog catches is a connection supervisor that lost track and will never retry.
    this.#watchdog.watch(
      "connectivity",
      this.#settings.watchdogTimeoutMs + KEEPALIVE_MS,
      () => this.#online || this.#client !== undefined || this.#reconnectTimer !== undefined,
    );
    Timer.set(this.#onCleanRun, this.#settings.safeModeWindowMs);
    // Also keeps uptime counting while offline: Time.ticks wraps after 49.7 days on hardware.
    Timer.repeat(this.#onStateTimer, this.#settings.stateIntervalMs);
    if (!this.#safeMode) this.#startSampling();
    this.#connect();
    this.#updater.afterBoot(this.#bootReport.reason);
  }

  #startSampling(): void {
    const { sda, scl } = this.#settings;
    const found = scanI2c(sda, scl);
    this.#log.write("info", "i2c scan", { sda, scl, count: found.length, found: found.map(hexAddress).join(" ") });
    this.#sampleTimer = Timer.repeat(this.#onSampleTimer, this.#config.sampleIntervalMs);
    this.#watchSampling();
  }

  #watchSampling(): void {
    this.#watchdog.watch("sampling", this.#settings.watchdogTimeoutMs + this.#config.sampleIntervalMs);
  }

  readonly #onSampleTimer = (): void => {
    if (Faults.hung("sampling")) return;
    this.#sampleTicks++;
    this.#watchdog.beat("sampling");
    this.#sample();
  };

  readonly #onWatchdogExpired = (subsystem: string, silentMs: number): void => {
    this.#log.write("error", "watchdog: subsystem stopped beating, restarting", { subsystem, silentMs });
    markDeliberateReset("watchdog", this.#log);
    System.restart();
  };

  /** The log sink once the device runs: keeps the record in flash and makes sure it will be shipped. */
  readonly #onLogRecord = (line: string): void => {
    this.#logs?.append(line);
    this.#scheduleLogShip();
  };

  /** Armed only while records wait and the broker is reachable: an idle device runs no shipping timer. */
  #scheduleLogShip(): void {
    if (this.#logTimer || !this.#online || !this.#logs?.queued) return;
    this.#logTimer = Timer.set(this.#onLogTimer, LOG_SHIP_MS);
  }

  readonly #onLogTimer = (): void => {
    this.#logTimer = undefined;
    this.#shipLogs();
    this.#scheduleLogShip();
  };

  #shipLogs(): void {
    const logs = this.#logs;
    const client = this.#client;
    if (!logs || !client || !this.#online) return;
    const batch = logs.next();
    if (batch === undefined) return;
    try {
      client.publish(this.#logTopic, batch, LOG_PUBLISH);
    } catch (error) {
      // The batch stays pending and goes first next time.
      if (error instanceof Error && error.message === SEND_BUFFER_FULL) return;
      this.#log.write("warn", "log publish failed", { error: describeError(error) }, "log");
      this.#connectionLost();
      return;
    }
    const dropped = logs.sent();
    if (dropped > 0) this.#log.write("warn", "log records dropped, the log ring was full", { dropped }, "log");
  }

  /** A whole boot-loop window without a reset: past resets are forgiven and safe mode ends. */
  readonly #onCleanRun = (): void => {
    if (this.#bootReport.abnormalResets > 0) forgiveResets(this.#log);
    if (!this.#safeMode) return;
    this.#safeMode = false;
    this.#log.write("info", "leaving safe mode after a clean run", { ranMs: this.#settings.safeModeWindowMs });
    this.#startSampling();
    if (this.#online) this.#publishState();
  };

  readonly #onReconnectTimer = (): void => {
    this.#reconnectTimer = undefined;
    this.#connect();
  };

  readonly #onFlushTimer = (): void => {
    this.#flushTimer = undefined;
    this.#flush();
  };

  readonly #onReady = (): void => {
    this.#online = true;
    this.#everConnected = true;
    this.#reconnectDelay = RECONNECT_MIN_MS;
    this.#log.write("info", "mqtt connected", { queued: this.#buffer?.size ?? 0 });
    try {
      this.#client?.subscribe(this.#commandTopic);
      this.#client?.subscribe(this.#telemetryAckTopic);
      for (const topic of this.#updater.topics) this.#client?.subscribe(topic);
      if (this.#plugins) this.#client?.subscribe(this.#pluginTopic);
    } catch (error) {
      this.#log.write("warn", "subscription failed", { error: describeError(error) });
      this.#connectionLost();
      return;
    }
    this.#publishState();
    this.#buffer?.rewind();
    this.#flush();
    this.#scheduleLogShip();
    this.#updater.connected();
  };

  readonly #onMessage = (topic: string, data: ArrayBuffer): void => {
    if (topic === this.#commandTopic) this.#commands.handle(data);
    else if (topic === this.#telemetryAckTopic) this.#onTelemetryAck(data);
    else if (this.#updater.handles(topic)) this.#updater.message(topic, data);
    else if (topic === this.#pluginTopic) this.#plugins?.install(String.fromArrayBuffer(data));
  };

  /** For the updater: a status report or a chunk request, at QoS 1; false when it could not go. */
  readonly #publishArtifact = (topic: string, payload: string): boolean => {
    const client = this.#client;
    if (!client || !this.#online) return false;
    try {
      client.publish(topic, payload, ARTIFACT_PUBLISH);
      return true;
    } catch (error) {
      if (!(error instanceof Error && error.message === SEND_BUFFER_FULL)) this.#connectionLost();
      return false;
    }
  };

  /** A new image must reach its gateway and keep sampling through its health window. */
  readonly #healthProblem = (): string | undefined => {
    if (!this.#everConnected) return "no connection to the gateway since the update";
    if (!this.#safeMode && this.#sampleTicks === 0) return "the sampler never ran since the update";
    return undefined;
  };

  /** Plugins started, stopped or changed: their metrics get columns of their own, and the cloud hears of it. */
  readonly #onPluginsChanged = (): void => {
    // Called from the constructor too, before the batcher exists.
    if (this.#batcher) this.#replaceBatcher();
    if (this.#online) this.#publishState();
  };

  /** The gateway has these batches on disk: their records are released, and the window has room again. */
  #onTelemetryAck(data: ArrayBuffer): void {
    const buffer = this.#buffer;
    const ack = parseTelemetryAck(String.fromArrayBuffer(data));
    if (!ack.ok) {
      this.#log.write("warn", "telemetry ack ignored", { error: ack.error.message });
      return;
    }
    if (!buffer || buffer.confirm(ack.value.boot, ack.value.seq) === 0) return;
    // Progress: the timeout counts from the last ack that confirmed something.
    Timer.clear(this.#ackTimer);
    this.#ackTimer = undefined;
    if (buffer.inFlight > 0) this.#armAckTimeout();
    if (!this.#flushTimer) this.#flush();
  }

  #armAckTimeout(): void {
    if (!this.#ackTimer) this.#ackTimer = Timer.set(this.#onAckTimeout, ACK_TIMEOUT_MS);
  }

  readonly #onAckTimeout = (): void => {
    this.#ackTimer = undefined;
    const buffer = this.#buffer;
    if (!buffer || buffer.inFlight === 0) return;
    this.#log.write("warn", "telemetry not acknowledged in time, sending it again", { inFlight: buffer.inFlight });
    buffer.rewind();
    this.#flush();
  };

  readonly #sendAck = (ack: string): void => {
    try {
      this.#client?.publish(this.#ackTopic, ack, ACK_PUBLISH);
    } catch (error) {
      // The sender repeats a command it got no ack for; the repeat gets this ack again.
      this.#log.write("warn", "command ack not sent", { error: describeError(error) });
    }
  };

  readonly #execute = (command: DeviceCommand): CommandOutcome => {
    switch (command.name) {
      case "ping":
        return { status: "done", result: { uptime: this.#uptime(), boot: this.#boot } };
      case "identify":
        return this.#identify(command.params?.seconds);
      case "set-config":
        return this.#setConfig(command.params ?? {});
      case "reboot":
        return { status: "done", afterAck: this.#reboot };
      case "plugin-enable":
      case "plugin-disable":
      case "plugin-remove":
      case "plugin-config":
        return this.#pluginCommand(command.name, command.params ?? {});
    }
  };

  #pluginCommand(name: string, params: Readonly<Record<string, string | number | boolean>>): CommandOutcome {
    const plugins = this.#plugins;
    if (!plugins) return { status: "failed", reason: "plugins are not available on this device" };
    const { name: plugin, ...config } = params;
    if (typeof plugin !== "string") return { status: "failed", reason: "params.name must name the plugin" };
    let outcome: ReturnType<Plugins["enable"]>;
    if (name === "plugin-enable") outcome = plugins.enable(plugin);
    else if (name === "plugin-disable") outcome = plugins.disable(plugin);
    else if (name === "plugin-remove") outcome = plugins.remove(plugin);
    else {
      const numbers: Record<string, number> = {};
      for (const key of Object.keys(config)) {
        const value = config[key];
        if (typeof value !== "number") return { status: "failed", reason: `config ${key} must be a number` };
        numbers[key] = value;
      }
      outcome = plugins.configure(plugin, numbers);
    }
    if (!outcome.ok) return { status: "failed", reason: outcome.reason };
    const { state, version } = outcome.status;
    return { status: "done", result: { name: plugin, version, state } };
  }

  readonly #reboot = (): void => {
    markDeliberateReset("command", this.#log);
    this.#log.write("warn", "restarting on command", {});
    Timer.set(() => System.restart(), REBOOT_DELAY_MS);
  };

  #identify(seconds: unknown): CommandOutcome {
    const duration = seconds ?? IDENTIFY_DEFAULT_S;
    if (typeof duration !== "number" || !Number.isInteger(duration) || duration < 1 || duration > IDENTIFY_MAX_S)
      return { status: "failed", reason: `seconds must be an integer 1..${IDENTIFY_MAX_S}` };
    this.#led.blink(duration);
    return { status: "done", result: { seconds: duration } };
  }

  #setConfig(params: Readonly<Record<string, unknown>>): CommandOutcome {
    let next: RuntimeConfig;
    try {
      next = applyConfigParams(this.#config, params);
    } catch (error) {
      return { status: "failed", reason: describeError(error) };
    }
    const saved = configParams(next);
    Preference.set(PREFERENCE_DOMAIN, CONFIG_KEY, JSON.stringify(saved));
    const intervalChanged = next.sampleIntervalMs !== this.#config.sampleIntervalMs;
    if (intervalChanged && this.#sampleTimer)
      Timer.schedule(this.#sampleTimer, next.sampleIntervalMs, next.sampleIntervalMs);
    this.#log.setLevel(next.logLevel);
    const sensorsChanged = next.sensors !== this.#config.sensors;
    this.#config = next;
    if (sensorsChanged) this.#replaceSensors();
    if (intervalChanged && this.#watchdog.watching("sampling")) this.#watchSampling();
    this.#temperatureAlarm = false;
    return { status: "done", result: saved };
  }

  /** Seconds since the chip started: Time.ticks counts from there, added up delta by delta across wraps. */
  #uptime(): number {
    const ticks = Time.ticks;
    this.#ranMs += Time.delta(this.#ranTicks, ticks);
    this.#ranTicks = ticks;
    return Math.floor(this.#ranMs / 1000);
  }

  /** Bytes of the XS heap in use (slots and chunks), from the SDK's Instrumentation; undefined without it. */
  #heap(): number | undefined {
    const slots = this.#slotHeap === undefined ? undefined : Instrumentation.get(this.#slotHeap);
    if (slots === undefined) return undefined;
    const chunks = this.#chunkHeap === undefined ? undefined : Instrumentation.get(this.#chunkHeap);
    return slots + (chunks ?? 0);
  }

  /** The Wi-Fi signal of the access point the station is associated with (dBm); undefined when it is not. */
  #rssi(): number | undefined {
    const rssi: unknown = Net.get("RSSI");
    return typeof rssi === "number" && Number.isInteger(rssi) && rssi < 0 && rssi >= -127 ? rssi : undefined;
  }

  readonly #onStateTimer = (): void => {
    if (this.#online) this.#publishState();
    else this.#uptime();
  };

  /** Logs once when a reading leaves the configured band and once when it is back. */
  #checkThresholds(temperature: number): void {
    const { temperatureLow, temperatureHigh } = this.#config;
    const outside =
      (temperatureLow !== undefined && temperature < temperatureLow) ||
      (temperatureHigh !== undefined && temperature > temperatureHigh);
    if (outside === this.#temperatureAlarm) return;
    this.#temperatureAlarm = outside;
    this.#log.write(
      outside ? "warn" : "info",
      outside ? "temperature outside thresholds" : "temperature back within thresholds",
      {
        temperature,
      },
    );
  }

  readonly #onClose = (): void => {
    if (!this.#client) return;
    this.#log.write("warn", "mqtt connection closed", { wasOnline: this.#online });
    this.#connectionLost();
  };

  #sample(): void {
    const sensors = this.#sensors;
    // A sample with no value at all (every sensor failing) is skipped, so seq stays contiguous.
    if (sensors.sample() === 0) return;
    const now = Date.now();
    // Until SNTP has set the clock, a timestamp would be 1970 and every layer would refuse the sample.
    if (now < CLOCK_VALID_FROM_MS) {
      if (this.#clockWaits++ % CLOCK_LOG_EVERY === 0)
        this.#log.write("warn", "clock not set yet, reading discarded", {});
      return;
    }
    const temperature = sensors.values[sensors.names.indexOf("temperature")];
    if (temperature !== undefined && !Number.isNaN(temperature)) this.#checkThresholds(temperature);
    const row = this.#withPlugins(sensors, now);
    const batch = this.#batcher.add(this.#seq++, now, row);
    if (batch !== undefined) this.#enqueue(batch);
    if (this.#pluginStopped) {
      this.#pluginStopped = false;
      this.#onPluginsChanged();
    }
  }

  /** The sample's row: the sensors' values, then what the running plugins computed from them. */
  #withPlugins(sensors: SensorSet, now: number): Float64Array {
    const plugins = this.#plugins;
    if (!plugins || plugins.running === 0) return sensors.values;
    const row = this.#row;
    const width = sensors.names.length;
    row.set(sensors.values.subarray(0, width));
    row.fill(Number.NaN, width);
    this.#pluginStopped = plugins.run(sensors.names, sensors.values, now, row, width);
    return row;
  }

  /** The sensor list set at run time (set-config `sensors`), else the build's. */
  #sensorSet(): SensorSet {
    let specs: SensorSpec[] = this.#settings.sensors;
    if (this.#config.sensors !== undefined) specs = parseSensorList(this.#config.sensors);
    const { sda, scl } = this.#settings;
    return new SensorSet(specs, { sda, scl, spi: this.#settings.spi, pulseCapture: PulseCapture }, this.#log);
  }

  #batcherFor(sensors: SensorSet): TelemetryBatcher {
    const names = [...sensors.names, ...(this.#plugins?.metricNames ?? [])];
    this.#row = new Float64Array(names.length);
    const perBatch = samplesPerBatchFor(names, this.#settings.samplesPerBatch);
    if (perBatch < this.#settings.samplesPerBatch)
      this.#log.write("warn", "batch shortened to fit a flash sector", {
        samplesPerBatch: perBatch,
        metrics: names.length,
      });
    return new TelemetryBatcher(this.#boot, perBatch, names);
  }

  /** New metric columns: the samples taken so far leave as a batch of their own. */
  #replaceBatcher(): void {
    const pending = this.#batcher.take();
    if (pending !== undefined) this.#enqueue(pending);
    this.#batcher = this.#batcherFor(this.#sensors);
  }

  /** Swaps the sensor set for a new list; the samples taken so far leave as a batch of their own. */
  #replaceSensors(): void {
    const pending = this.#batcher.take();
    if (pending !== undefined) this.#enqueue(pending);
    this.#sensors.close();
    this.#sensors = this.#sensorSet();
    this.#batcher = this.#batcherFor(this.#sensors);
    this.#plugins?.setSensorNames(this.#sensors.names);
    this.#log.write("info", "sensors reconfigured", { metrics: this.#sensors.names.join(" ") });
  }

  /** Every batch goes to flash first and is sent from there, behind anything older, so the order never changes. */
  #enqueue(batch: string): void {
    const samples = this.#settings.samplesPerBatch;
    const buffer = this.#buffer;
    // Without the ring a batch is published once, unconfirmed, or lost.
    if (!buffer) {
      if (!this.#publishTelemetry(batch)) this.#droppedUnbuffered += samples;
      return;
    }
    this.#store(buffer, batch, samples);
    if (!this.#flushTimer) this.#flush();
  }

  #store(buffer: FlashRing, batch: string, samples: number): void {
    try {
      const dropped = buffer.push(batch, samples);
      if (dropped > 0) {
        this.#log.write("warn", "flash buffer full, dropped the oldest samples", { dropped, total: this.#dropped() });
        // A full ring also drops while it is being replayed: the state tells the cloud at once.
        if (this.#online) this.#publishState();
      }
    } catch (error) {
      this.#droppedUnbuffered += samples;
      this.#log.write("error", "flash buffer write failed, batch dropped", { error: describeError(error) });
    }
  }

  #dropped(): number {
    return (this.#buffer?.dropped ?? 0) + this.#droppedUnbuffered;
  }

  /** True once the client took the batch; false when it must wait (offline, or the send buffer is full). */
  #publishTelemetry(batch: string): boolean {
    const client = this.#client;
    if (!client || !this.#online) return false;
    try {
      client.publish(this.#telemetryTopic, batch, TELEMETRY_PUBLISH);
      return true;
    } catch (error) {
      // lwIP's send buffer is full: back-pressure, not a dead link. The batch waits in flash.
      if (error instanceof Error && error.message === SEND_BUFFER_FULL) {
        this.#scheduleFlush();
        return false;
      }
      this.#log.write("warn", "telemetry publish failed", {
        error: describeError(error),
        queued: this.#buffer?.size ?? 0,
      });
      this.#connectionLost();
      return false;
    }
  }

  #flush(): void {
    const buffer = this.#buffer;
    if (!buffer || !this.#online) return;
    for (let sent = 0; sent < FLUSH_BATCHES_PER_TURN; sent++) {
      // A full window waits for acks; the next one that confirms something flushes again.
      if (buffer.inFlight === IN_FLIGHT_MAX) return;
      const batch = buffer.peek();
      if (batch === undefined) return;
      if (!this.#publishTelemetry(batch)) return;
      buffer.sent(batchBoot(batch), batchLastSeq(batch));
      this.#armAckTimeout();
    }
    if (buffer.unsent > 0) this.#scheduleFlush();
  }

  #scheduleFlush(): void {
    if (!this.#flushTimer) this.#flushTimer = Timer.set(this.#onFlushTimer, FLUSH_PAUSE_MS);
  }

  #publishState(): void {
    const state: DeviceState = {
      v: WIRE_VERSION,
      online: true,
      fw: this.#updater.version,
      boot: this.#boot,
      uptime: this.#uptime(),
      reset: this.#bootReport.reason,
      mode: this.#safeMode ? "safe" : "normal",
      dropped: this.#dropped(),
    };
    const heap = this.#heap();
    if (heap !== undefined) state.heap = heap;
    const rssi = this.#rssi();
    if (rssi !== undefined) state.rssi = rssi;
    // Reported even when empty, so the cloud learns that the last plugin was removed.
    if (this.#plugins) state.plugins = this.#plugins.statuses();
    try {
      this.#client?.publish(this.#stateTopic, JSON.stringify(state), STATE_PUBLISH);
    } catch (error) {
      this.#log.write("warn", "state publish failed", { error: describeError(error) });
      this.#connectionLost();
    }
  }

  #connect(): void {
    const { deviceId, token, mqttHost, mqttPort } = this.#settings;
    try {
      const client = new Client({
        host: mqttHost,
        port: mqttPort,
        id: deviceId,
        user: deviceId,
        password: token,
        will: { topic: this.#stateTopic, message: this.#offlineState, retain: true, quality: 1 },
        timeout: KEEPALIVE_MS,
        ...this.#tls(),
      });
      client.onReady = this.#onReady;
      client.onMessage = this.#onMessage;
      client.onClose = this.#onClose;
      this.#client = client;
    } catch (error) {
      this.#log.write("warn", "mqtt connect failed", { error: describeError(error) });
      this.#scheduleReconnect();
    }
  }

  /** securesocket verifies the server's chain against the CA and its name (mqttHost) against subjectAltName. */
  #tls(): { Socket: typeof SecureSocket; secure: Record<string, unknown> } | undefined {
    const { mqttTls, mqttCa, mqttClientCert, mqttClientKey } = this.#settings;
    if (!mqttTls) return undefined;
    const secure: Record<string, unknown> = { protocolVersion: TLS_1_2, certificate: new Resource(mqttCa) };
    if (mqttClientCert !== "") {
      secure.clientCertificates = [new Resource(mqttClientCert)];
      secure.clientKey = new Resource(mqttClientKey);
    }
    return { Socket: SecureSocket, secure };
  }

  #connectionLost(): void {
    this.#online = false;
    const client = this.#client;
    this.#client = undefined;
    client?.close();
    // What is in flight may never have reached the gateway: it goes again, in order, after reconnecting.
    this.#buffer?.rewind();
    Timer.clear(this.#ackTimer);
    this.#ackTimer = undefined;
    this.#updater.disconnected();
    this.#scheduleReconnect();
  }

  #scheduleReconnect(): void {
    if (this.#reconnectTimer) return;
    // Jitter spreads a fleet's reconnects after a broker restart.
    const delay = Math.round(this.#reconnectDelay * (0.5 + Math.random() * 0.5));
    this.#reconnectDelay = Math.min(this.#reconnectDelay * 2, RECONNECT_MAX_MS);
    this.#log.write("info", "mqtt reconnect scheduled", { delayMs: delay });
    this.#reconnectTimer = Timer.set(this.#onReconnectTimer, delay);
  }
}

/** Moddable runs the main module's default export once the runtime (and Wi-Fi, SNTP) are up. */
export default function main(): void {
  const log = new Log();
  let settings: DeviceSettings;
  let ota: OtaSettings;
  try {
    settings = readSettings(config);
    ota = readOtaSettings(config);
  } catch (error) {
    log.write("error", "invalid configuration", { error: describeError(error) });
    return;
  }
  const boot = countBoot(log);
  log.setBoot(boot);
  const logs = openLogShipper(settings.logPartition, log);
  const report = takeBootReport(settings.safeModeAfterResets, log);
  const runtime = loadRuntimeConfig(settings, log);
  log.setLevel(runtime.logLevel);
  log.write("info", "boot", { fw: runningVersion(), boot, deviceId: settings.deviceId, reset: report.reason });
  if (report.safeMode)
    log.write("error", "boot loop: safe mode, sampling off until a clean run or a reboot command", {
      abnormalResets: report.abnormalResets,
      cleanRunMs: settings.safeModeWindowMs,
    });
  new Device(settings, boot, report, runtime, log, logs, ota).start();
}
