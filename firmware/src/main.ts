// The Kestrel device application: counts boots in flash, samples the BMP280 every interval, batches
// readings into TelemetryBatch payloads and publishes them over MQTT, holding unsent batches in RAM
// while the broker is unreachable and reconnecting with exponential backoff.

import I2C from "embedded:io/i2c";
import { CLOCK_VALID_FROM_MS, type DeviceState, OFFLINE_STATE, topics, WIRE_VERSION } from "@kestrel/wire";
import { describeError, log } from "kestrel/log";
import Outbox from "kestrel/outbox";
import { type DeviceSettings, readSettings } from "kestrel/settings";
import TelemetryBatcher from "kestrel/telemetry";
import config from "mc/config";
import Client from "mqtt";
import Preference from "preference";
import BMP280, { type Bmp280Sample } from "sensors/bmp280";
import Time from "time";
import Timer from "timer";

export const FIRMWARE_VERSION = "0.1.0";

const PREFERENCE_DOMAIN = "kestrel";
const BOOT_KEY = "boot";
const KEEPALIVE_MS = 30_000;
const RECONNECT_MIN_MS = 1_000;
const RECONNECT_MAX_MS = 60_000;
/** Consecutive failed reads after which the sensor is closed and probed again from scratch. */
const SENSOR_REOPEN_AFTER = 3;
/** A lasting sensor failure is logged at its first occurrence, then every this many attempts. */
const SENSOR_LOG_EVERY = 60;
/**
 * Moddable's MQTT client writes straight into the socket and reports no back-pressure, so a long
 * outbox is sent a few batches at a time with a pause between turns.
 */
const FLUSH_BATCHES_PER_TURN = 4;
const FLUSH_PAUSE_MS = 100;
/** What Moddable's lwIP socket throws when a message does not fit the free TCP send buffer. */
const SEND_BUFFER_FULL = "can't write all data";

const TELEMETRY_PUBLISH = { quality: 1 } as const;
const STATE_PUBLISH = { quality: 1, retain: true } as const;

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
  readonly #bootTicks = Time.ticks;
  readonly #telemetryTopic: string;
  readonly #stateTopic: string;
  readonly #offlineState = JSON.stringify(OFFLINE_STATE);
  readonly #reading: Bmp280Sample = { temperature: 0, pressure: 0 };
  readonly #batcher: TelemetryBatcher;
  readonly #outbox: Outbox;
  #sensor: BMP280 | undefined;
  #sensorFailures = 0;
  #clockWaits = 0;
  #seq = 0;
  #client: Client | undefined;
  #online = false;
  #reconnectDelay = RECONNECT_MIN_MS;
  #reconnectTimer: Timer | undefined;
  #flushTimer: Timer | undefined;

  constructor(settings: DeviceSettings, boot: number) {
    this.#settings = settings;
    this.#boot = boot;
    this.#telemetryTopic = topics.telemetry(settings.deviceId);
    this.#stateTopic = topics.state(settings.deviceId);
    this.#batcher = new TelemetryBatcher(boot, settings.samplesPerBatch);
    this.#outbox = new Outbox(settings.outboxBatches);
  }

  start(): void {
    this.#openSensor();
    Timer.repeat(this.#onSampleTimer, this.#settings.sampleIntervalMs);
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
    log("info", "mqtt connected", { queued: this.#outbox.size });
    this.#publishState();
    this.#flush();
  };

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
    if (this.#outbox.push(batch))
      log("warn", "outbox full, dropped the oldest batch", { dropped: this.#outbox.dropped });
    this.#flush();
  }

  #flush(): void {
    const client = this.#client;
    if (!client || !this.#online) return;
    const outbox = this.#outbox;
    for (let sent = 0; sent < FLUSH_BATCHES_PER_TURN; sent++) {
      const batch = outbox.peek();
      if (batch === undefined) return;
      try {
        client.publish(this.#telemetryTopic, batch, TELEMETRY_PUBLISH);
      } catch (error) {
        // lwIP's send buffer is full: back-pressure, not a dead link. The batch stays queued.
        if (error instanceof Error && error.message === SEND_BUFFER_FULL) break;
        log("warn", "telemetry publish failed", { error: describeError(error), queued: outbox.size });
        this.#connectionLost();
        return;
      }
      outbox.shift();
    }
    if (outbox.size > 0 && !this.#flushTimer) this.#flushTimer = Timer.set(this.#onFlushTimer, FLUSH_PAUSE_MS);
  }

  #publishState(): void {
    const state: DeviceState = {
      v: WIRE_VERSION,
      online: true,
      fw: FIRMWARE_VERSION,
      boot: this.#boot,
      uptime: Math.floor(Time.delta(this.#bootTicks) / 1000),
      reset: "power-on",
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
      });
      client.onReady = this.#onReady;
      client.onClose = this.#onClose;
      this.#client = client;
    } catch (error) {
      log("warn", "mqtt connect failed", { error: describeError(error) });
      this.#scheduleReconnect();
    }
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
  log("info", "boot", { fw: FIRMWARE_VERSION, boot, deviceId: settings.deviceId });
  new Device(settings, boot).start();
}
