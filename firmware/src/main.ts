// The Kestrel device application: counts boots in flash, samples the BMP280 every interval, batches
// readings into TelemetryBatch payloads and publishes them over MQTT, keeping batches it cannot send
// in a ring in flash (replayed in order once the broker is back) and reconnecting with exponential
// backoff. Executes the commands it receives on d/{id}/cmd.

import Resource from "Resource";
import I2C from "embedded:io/i2c";
import {
  CLOCK_VALID_FROM_MS,
  type DeviceCommand,
  type DeviceState,
  OFFLINE_STATE,
  type ResetReason,
  topics,
  WIRE_VERSION,
} from "@kestrel/wire";
import CommandHandler, { type CommandOutcome } from "kestrel/commands";
import FlashRing from "kestrel/flash-ring";
import { describeError, log, setLogLevel } from "kestrel/log";
import {
  applyConfigParams,
  configParams,
  type DeviceSettings,
  parseRuntimeConfig,
  type RuntimeConfig,
  readSettings,
} from "kestrel/settings";
import StatusLed from "kestrel/status-led";
import TelemetryBatcher from "kestrel/telemetry";
import config from "mc/config";
import Client from "mqtt";
import Preference from "preference";
import SecureSocket from "securesocket";
import BMP280, { type Bmp280Sample } from "sensors/bmp280";
import System from "system";
import Time from "time";
import Timer from "timer";

export const FIRMWARE_VERSION = "0.1.0";

const PREFERENCE_DOMAIN = "kestrel";
const BOOT_KEY = "boot";
const CONFIG_KEY = "config";
/** Set just before a commanded restart, read and cleared at the next boot. */
const RESET_KEY = "reset";
/** Lets the done ack of a reboot leave the socket before the chip resets. */
const REBOOT_DELAY_MS = 500;
const IDENTIFY_DEFAULT_S = 5;
const IDENTIFY_MAX_S = 60;
const KEEPALIVE_MS = 30_000;
const RECONNECT_MIN_MS = 1_000;
const RECONNECT_MAX_MS = 60_000;
/** Consecutive failed reads after which the sensor is closed and probed again from scratch. */
const SENSOR_REOPEN_AFTER = 3;
/** A lasting sensor failure is logged at its first occurrence, then every this many attempts. */
const SENSOR_LOG_EVERY = 60;
/**
 * Moddable's MQTT client writes straight into the socket and reports no back-pressure, so a long
 * flash buffer is sent a few batches at a time with a pause between turns.
 */
const FLUSH_BATCHES_PER_TURN = 4;
const FLUSH_PAUSE_MS = 100;
/** What Moddable's lwIP socket throws when a message does not fit the free TCP send buffer. */
const SEND_BUFFER_FULL = "can't write all data";

/** The newest TLS version Moddable's securesocket implements. */
const TLS_1_2 = 0x0303;
const TELEMETRY_PUBLISH = { quality: 1 } as const;
const STATE_PUBLISH = { quality: 1, retain: true } as const;
const ACK_PUBLISH = { quality: 1 } as const;

function openBuffer(partition: string): FlashRing | undefined {
  try {
    const buffer = new FlashRing(partition);
    if (buffer.size > 0) log("info", "flash buffer holds unsent batches", { queued: buffer.size });
    return buffer;
  } catch (error) {
    log("error", "flash buffer unavailable, unsent batches will be dropped", { error: describeError(error) });
    return undefined;
  }
}

/** Why this boot happened: a commanded restart leaves a mark in flash, anything else reads as power-on. */
function takeResetReason(): ResetReason {
  try {
    const reason = Preference.get(PREFERENCE_DOMAIN, RESET_KEY);
    if (reason === undefined) return "power-on";
    Preference.delete(PREFERENCE_DOMAIN, RESET_KEY);
    return reason === "command" ? "command" : "unknown";
  } catch {
    return "unknown";
  }
}

function loadRuntimeConfig(settings: DeviceSettings): RuntimeConfig {
  const defaults: RuntimeConfig = { sampleIntervalMs: settings.sampleIntervalMs, logLevel: "info" };
  let saved: unknown;
  try {
    saved = Preference.get(PREFERENCE_DOMAIN, CONFIG_KEY);
  } catch (error) {
    log("warn", "saved configuration unreadable", { error: describeError(error) });
  }
  return parseRuntimeConfig(saved, defaults) ?? defaults;
}

/** Increments the boot counter kept in flash; (deviceId, boot, seq) identifies a sample everywhere. */
function countBoot(): number {
  try {
    const previous = Preference.get(PREFERENCE_DOMAIN, BOOT_KEY);
    const boot = (typeof previous === "number" && previous >= 0 ? previous : 0) + 1;
    Preference.set(PREFERENCE_DOMAIN, BOOT_KEY, boot);
    return boot;
  } catch (error) {
    // Boot 0 marks "counter unavailable"; the data still flows, at the risk of deduplication.
    log("error", "boot counter unavailable", { error: describeError(error) });
    return 0;
  }
}

class Device {
  readonly #settings: DeviceSettings;
  readonly #boot: number;
  readonly #reset: ResetReason;
  #config: RuntimeConfig;
  #sampleTimer: Timer | undefined;
  #temperatureAlarm = false;
  readonly #led: StatusLed;
  readonly #commands: CommandHandler;
  readonly #commandTopic: string;
  readonly #ackTopic: string;
  readonly #bootTicks = Time.ticks;
  readonly #telemetryTopic: string;
  readonly #stateTopic: string;
  readonly #offlineState = JSON.stringify(OFFLINE_STATE);
  readonly #reading: Bmp280Sample = { temperature: 0, pressure: 0 };
  readonly #batcher: TelemetryBatcher;
  /** Undefined when the flash partition cannot be used: unsendable batches are then dropped. */
  readonly #buffer: FlashRing | undefined;
  /** Samples dropped without reaching the flash ring (no partition, or a write failed). */
  #droppedUnbuffered = 0;
  #sensor: BMP280 | undefined;
  #sensorFailures = 0;
  #clockWaits = 0;
  #seq = 0;
  #client: Client | undefined;
  #online = false;
  #reconnectDelay = RECONNECT_MIN_MS;
  #reconnectTimer: Timer | undefined;
  #flushTimer: Timer | undefined;

  constructor(settings: DeviceSettings, boot: number, reset: ResetReason, config: RuntimeConfig) {
    this.#settings = settings;
    this.#boot = boot;
    this.#reset = reset;
    this.#config = config;
    this.#telemetryTopic = topics.telemetry(settings.deviceId);
    this.#stateTopic = topics.state(settings.deviceId);
    this.#commandTopic = topics.command(settings.deviceId);
    this.#ackTopic = topics.commandAck(settings.deviceId);
    this.#commands = new CommandHandler(this.#execute, this.#sendAck);
    this.#led = new StatusLed(settings.ledPin);
    this.#batcher = new TelemetryBatcher(boot, settings.samplesPerBatch);
    this.#buffer = openBuffer(settings.flashPartition);
  }

  start(): void {
    this.#openSensor();
    this.#sampleTimer = Timer.repeat(this.#onSampleTimer, this.#config.sampleIntervalMs);
    this.#connect();
  }

  readonly #onSampleTimer = (): void => {
    this.#sample();
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
    this.#reconnectDelay = RECONNECT_MIN_MS;
    log("info", "mqtt connected", { queued: this.#buffer?.size ?? 0 });
    try {
      this.#client?.subscribe(this.#commandTopic);
    } catch (error) {
      log("warn", "command subscription failed", { error: describeError(error) });
      this.#connectionLost();
      return;
    }
    this.#publishState();
    this.#flush();
  };

  readonly #onMessage = (topic: string, data: ArrayBuffer): void => {
    if (topic === this.#commandTopic) this.#commands.handle(data);
  };

  readonly #sendAck = (ack: string): void => {
    try {
      this.#client?.publish(this.#ackTopic, ack, ACK_PUBLISH);
    } catch (error) {
      // The sender repeats a command it got no ack for; the repeat gets this ack again.
      log("warn", "command ack not sent", { error: describeError(error) });
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
    }
  };

  readonly #reboot = (): void => {
    Preference.set(PREFERENCE_DOMAIN, RESET_KEY, "command");
    log("warn", "restarting on command", {});
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
    if (next.sampleIntervalMs !== this.#config.sampleIntervalMs && this.#sampleTimer)
      Timer.schedule(this.#sampleTimer, next.sampleIntervalMs, next.sampleIntervalMs);
    setLogLevel(next.logLevel);
    this.#config = next;
    this.#temperatureAlarm = false;
    return { status: "done", result: saved };
  }

  #uptime(): number {
    return Math.floor(Time.delta(this.#bootTicks) / 1000);
  }

  /** Logs once when a reading leaves the configured band and once when it is back. */
  #checkThresholds(temperature: number): void {
    const { temperatureLow, temperatureHigh } = this.#config;
    const outside =
      (temperatureLow !== undefined && temperature < temperatureLow) ||
      (temperatureHigh !== undefined && temperature > temperatureHigh);
    if (outside === this.#temperatureAlarm) return;
    this.#temperatureAlarm = outside;
    log(outside ? "warn" : "info", outside ? "temperature outside thresholds" : "temperature back within thresholds", {
      temperature,
    });
  }

  readonly #onClose = (): void => {
    if (!this.#client) return;
    log("warn", "mqtt connection closed", { wasOnline: this.#online });
    this.#connectionLost();
  };

  #sample(): void {
    const sensor = this.#sensor ?? this.#openSensor();
    if (!sensor) return;
    const reading = this.#reading;
    try {
      sensor.sample(reading);
    } catch (error) {
      this.#sensorFailed("bmp280 read failed", error);
      if (this.#sensorFailures === SENSOR_REOPEN_AFTER) {
        log("warn", "bmp280 closed after failed reads, probing it again", { failures: this.#sensorFailures });
        sensor.close();
        this.#sensor = undefined;
      }
      return;
    }
    this.#sensorFailures = 0;
    const now = Date.now();
    // Until SNTP has set the clock, a timestamp would be 1970 and every layer would refuse the sample.
    if (now < CLOCK_VALID_FROM_MS) {
      if (this.#clockWaits++ % SENSOR_LOG_EVERY === 0) log("warn", "clock not set yet, reading discarded", {});
      return;
    }
    this.#checkThresholds(reading.temperature);
    const batch = this.#batcher.add(this.#seq++, now, reading.temperature, reading.pressure);
    if (batch !== undefined) this.#enqueue(batch);
  }

  #openSensor(): BMP280 | undefined {
    const { sda, scl, bmp280Address } = this.#settings;
    try {
      this.#sensor = new BMP280({ sensor: { io: I2C, data: sda, clock: scl, address: bmp280Address } });
    } catch (error) {
      this.#sensorFailed("bmp280 unavailable", error);
      return undefined;
    }
    this.#sensorFailures = 0;
    log("info", "bmp280 ready", { address: bmp280Address });
    return this.#sensor;
  }

  #sensorFailed(msg: string, error: unknown): void {
    const failures = ++this.#sensorFailures;
    if (failures === 1 || failures % SENSOR_LOG_EVERY === 0)
      log("warn", msg, { error: describeError(error), failures });
  }

  #enqueue(batch: string): void {
    // Straight to the broker only when nothing older waits, so the order never changes.
    if (!this.#buffer?.size && this.#publishTelemetry(batch)) return;
    this.#store(batch);
  }

  #store(batch: string): void {
    const samples = this.#settings.samplesPerBatch;
    const buffer = this.#buffer;
    if (!buffer) {
      this.#droppedUnbuffered += samples;
      return;
    }
    try {
      const dropped = buffer.push(batch, samples);
      if (dropped > 0) {
        log("warn", "flash buffer full, dropped the oldest samples", { dropped, total: this.#dropped() });
        // A full ring also drops while it is being replayed: the state tells the cloud at once.
        if (this.#online) this.#publishState();
      }
    } catch (error) {
      this.#droppedUnbuffered += samples;
      log("error", "flash buffer write failed, batch dropped", { error: describeError(error) });
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
      log("warn", "telemetry publish failed", { error: describeError(error), queued: this.#buffer?.size ?? 0 });
      this.#connectionLost();
      return false;
    }
  }

  #flush(): void {
    const buffer = this.#buffer;
    if (!buffer) return;
    for (let sent = 0; sent < FLUSH_BATCHES_PER_TURN; sent++) {
      const batch = buffer.peek();
      if (batch === undefined) return;
      if (!this.#publishTelemetry(batch)) return;
      buffer.shift();
    }
    if (buffer.size > 0) this.#scheduleFlush();
  }

  #scheduleFlush(): void {
    if (!this.#flushTimer) this.#flushTimer = Timer.set(this.#onFlushTimer, FLUSH_PAUSE_MS);
  }

  #publishState(): void {
    const state: DeviceState = {
      v: WIRE_VERSION,
      online: true,
      fw: FIRMWARE_VERSION,
      boot: this.#boot,
      uptime: this.#uptime(),
      reset: this.#reset,
      dropped: this.#dropped(),
    };
    try {
      this.#client?.publish(this.#stateTopic, JSON.stringify(state), STATE_PUBLISH);
    } catch (error) {
      log("warn", "state publish failed", { error: describeError(error) });
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
      log("warn", "mqtt connect failed", { error: describeError(error) });
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
    this.#scheduleReconnect();
  }

  #scheduleReconnect(): void {
    if (this.#reconnectTimer) return;
    // Jitter spreads a fleet's reconnects after a broker restart.
    const delay = Math.round(this.#reconnectDelay * (0.5 + Math.random() * 0.5));
    this.#reconnectDelay = Math.min(this.#reconnectDelay * 2, RECONNECT_MAX_MS);
    log("info", "mqtt reconnect scheduled", { delayMs: delay });
    this.#reconnectTimer = Timer.set(this.#onReconnectTimer, delay);
  }
}

/** Moddable runs the main module's default export once the runtime (and Wi-Fi, SNTP) are up. */
export default function main(): void {
  let settings: DeviceSettings;
  try {
    settings = readSettings(config);
  } catch (error) {
    log("error", "invalid configuration", { error: describeError(error) });
    return;
  }
  const boot = countBoot();
  const reset = takeResetReason();
  const runtime = loadRuntimeConfig(settings);
  setLogLevel(runtime.logLevel);
  log("info", "boot", { fw: FIRMWARE_VERSION, boot, deviceId: settings.deviceId, reset });
  new Device(settings, boot, reset, runtime).start();
}
