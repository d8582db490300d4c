// Fleet load: N devices speaking the real protocol to a running platform, as a
// third-party client would. Each device is created through the cloud's API
// (its own token), connects over MQTT/TLS with that token, says it is online
// (retained state, last will offline), and publishes a TelemetryBatch of
// `samplesPerBatch` samples every `intervalMs` at QoS 1. A batch counts as
// acknowledged when its PUBACK arrives (the gateway has it on disk). At the
// end the tool waits for the cloud to have applied everything and checks,
// through the API, that every acknowledged sample is stored, and none twice.
//
// Measured: ack latency (publish to PUBACK), apply lag (PUBACK to the sample
// being readable through the API, on a few probe devices polled twice a
// second), the API's latency during the load (health, the dashboard's device
// list, a device's 24 h history) and the tool's own load (CPU, event-loop
// delay, how late publishes left), so a run shows whether the generator or
// the platform was the limit. Loopback only, and bounded in every dimension.

import { monitorEventLoopDelay } from "node:perf_hooks";
import { setTimeout as wait } from "node:timers/promises";
import { LATEST_LISTED_MAX } from "@kestrel/cloud";
import { type TelemetryBatch, topics } from "@kestrel/wire";
import { connect, type MqttClient } from "mqtt";
import { formatSummary, Latencies, type Summary } from "./stats.ts";

export const FLEET_LIMITS = Object.freeze({
  devices: 10_000,
  samplesPerBatch: 45,
  minIntervalMs: 100,
  maxDurationMs: 3_600_000,
});

export interface FleetOptions {
  /** The cloud API, e.g. http://127.0.0.1:8080 */
  cloudUrl: string;
  /** The gateway, e.g. mqtts://127.0.0.1:8883 */
  mqttUrl: string;
  /** PEM CA the gateway's certificate is verified against (mqtts). */
  ca?: string;
  admin: { email: string; password: string };
  devices: number;
  samplesPerBatch: number;
  intervalMs: number;
  durationMs: number;
  /** Device ids are `<idPrefix>-<n>`; devices that exist get a new token. */
  idPrefix: string;
  /** Connections opened per second while ramping up. */
  connectPerSecond: number;
  /** How long the end may wait for acknowledgements and for the cloud to apply everything. */
  settleTimeoutMs: number;
  /** Progress lines. */
  log: (line: string) => void;
}

export interface FleetReport {
  devices: number;
  connected: number;
  batchesSent: number;
  batchesAcked: number;
  samplesAcked: number;
  /** Acknowledged samples the API does not have. */
  missing: number;
  /** Samples the API has more than once (any layer deduplicating wrongly). */
  duplicated: number;
  /** Devices whose stored-sample counter moved by other than what their history holds for this run. */
  counterMismatches: number;
  /** Copies received again and recognised as duplicates (resends after a lost ack: expected, not stored). */
  resent: number;
  /** Samples per second acknowledged during the publishing phase. */
  ackedPerSecond: number;
  ackLatency: Summary;
  applyLag: Summary;
  /** Apply lag in the first and the last third of the run: a lag that grows is not bounded. */
  applyLagThirds: [Summary, Summary];
  api: Record<"health" | "deviceList" | "history24h", Summary & { failures: number }>;
  /** How late publishes left against their schedule: the generator's own limit. */
  publishSlip: Summary;
  generator: { cpuPercent: number; eventLoopDelayP99Ms: number };
  /** Seconds from the last publish until the cloud had applied everything (or the settle timeout). */
  drainSeconds: number;
}

const API_PROBE_INTERVAL_MS = 2_000;
const LAG_PROBE_INTERVAL_MS = 500;
const LAG_PROBE_DEVICES = 20;
const PROGRESS_INTERVAL_MS = 30_000;
const CREATE_CONCURRENCY = 8;
const VERIFY_CONCURRENCY = 8;
const HOUR_MS = 3_600_000;
/** The dashboard's page size. */
const DASHBOARD_PAGE = 25;
const LOOPBACK = new Set(["127.0.0.1", "localhost", "[::1]", "::1"]);

export class FleetError extends Error {}

export function checkFleetOptions(options: FleetOptions): void {
  for (const [name, url] of [
    ["cloud URL", options.cloudUrl],
    ["MQTT URL", options.mqttUrl],
  ] as const) {
    let host: string;
    try {
      host = new URL(url).hostname;
    } catch {
      throw new FleetError(`${name} is not a URL: ${url}`);
    }
    if (!LOOPBACK.has(host)) throw new FleetError(`${name} must be on loopback (this is a load tool), got ${host}`);
  }
  const within = (name: string, value: number, min: number, max: number) => {
    if (!Number.isInteger(value) || value < min || value > max) {
      throw new FleetError(`${name} must be an integer between ${min} and ${max}, got ${value}`);
    }
  };
  within("devices", options.devices, 1, FLEET_LIMITS.devices);
  within("samples per batch", options.samplesPerBatch, 1, FLEET_LIMITS.samplesPerBatch);
  within("interval (ms)", options.intervalMs, FLEET_LIMITS.minIntervalMs, FLEET_LIMITS.maxDurationMs);
  within("duration (ms)", options.durationMs, 1_000, FLEET_LIMITS.maxDurationMs);
  within("connections per second", options.connectPerSecond, 1, 1_000);
  if (!/^[A-Za-z0-9][A-Za-z0-9_-]{0,40}$/.test(options.idPrefix)) {
    throw new FleetError("the id prefix must be 1..41 of A-Z a-z 0-9 _ - (device ids are <prefix>-<n>)");
  }
}

/** The cloud API as an operator uses it. */
class Api {
  private token = "";

  constructor(private readonly baseUrl: string) {}

  async login(email: string, password: string): Promise<void> {
    const { body } = await this.call("POST", "/api/auth/login", { email, password });
    this.token = (body as { token: string }).token;
  }

  async call(method: string, path: string, json?: unknown): Promise<{ status: number; body: unknown }> {
    const response = await fetch(`${this.baseUrl}${path}`, {
      method,
      headers: {
        ...(this.token && { authorization: `Bearer ${this.token}` }),
        ...(json !== undefined && { "content-type": "application/json" }),
      },
      body: json === undefined ? undefined : JSON.stringify(json),
      signal: AbortSignal.timeout(30_000),
    });
    const text = await response.text();
    const body = text ? JSON.parse(text) : undefined;
    if (!response.ok && response.status !== 409) {
      throw new FleetError(`${method} ${path} answered ${response.status}: ${text.slice(0, 300)}`);
    }
    return { status: response.status, body };
  }

  /** The device, created or given a new token; answers its token. */
  async deviceToken(deviceId: string): Promise<string> {
    const created = await this.call("POST", "/api/devices", { deviceId, tags: ["fleet-load"] });
    if (created.status !== 409) return (created.body as { token: string }).token;
    const rotated = await this.call("POST", `/api/devices/${encodeURIComponent(deviceId)}/token`);
    return (rotated.body as { token: string }).token;
  }

  async timed(path: string): Promise<{ ms: number; ok: boolean }> {
    const started = performance.now();
    try {
      const response = await fetch(`${this.baseUrl}${path}`, {
        headers: { authorization: `Bearer ${this.token}` },
        signal: AbortSignal.timeout(30_000),
      });
      await response.arrayBuffer();
      return { ms: performance.now() - started, ok: response.ok };
    } catch {
      return { ms: performance.now() - started, ok: false };
    }
  }
}

/** Runs `work` over the items, `concurrency` at a time. */
async function eachLimited<T>(items: T[], concurrency: number, work: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) await work(items[next++] as T);
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, items.length) }, worker));
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
/** Sleeps, but wakes as soon as the signal aborts. */
const sleepUnless = (ms: number, signal: AbortSignal) => wait(ms, undefined, { signal }).catch(() => undefined);

interface AckedBatch {
  firstSeq: number;
  count: number;
  /** The batch's newest sample time: visible once the device's latest reaches it. */
  lastTs: number;
  ackedAt: number;
  visible: boolean;
}

/** One simulated device: its connection, its schedule, and what it got acknowledged. */
class FleetDevice {
  client: MqttClient | undefined;
  connected = false;
  nextSeq = 0;
  sent = 0;
  readonly acked: AckedBatch[] = [];
  private timer: NodeJS.Timeout | undefined;
  private pending = 0;
  private idle: (() => void) | undefined;

  constructor(
    readonly deviceId: string,
    readonly token: string,
    private readonly boot: number,
  ) {}

  connect(options: FleetOptions): Promise<void> {
    const client = connect(options.mqttUrl, {
      clientId: this.deviceId,
      username: this.deviceId,
      password: this.token,
      protocolVersion: 4,
      clean: true,
      keepalive: 60,
      reconnectPeriod: 1_000,
      connectTimeout: 30_000,
      ...(options.ca && { ca: options.ca }),
      will: {
        topic: topics.state(this.deviceId),
        payload: Buffer.from('{"v":1,"online":false}'),
        qos: 1,
        retain: true,
      },
    });
    this.client = client;
    client.on("error", () => undefined);
    client.on("close", () => {
      this.connected = false;
    });
    client.on("connect", () => {
      this.connected = true;
      client.subscribe(topics.telemetryAck(this.deviceId), { qos: 0 });
      client.publish(
        topics.state(this.deviceId),
        JSON.stringify({ v: 1, online: true, fw: "fleet-load", boot: this.boot }),
        { qos: 1, retain: true },
      );
    });
    return new Promise((resolve) => {
      client.once("connect", () => resolve());
      // A device that cannot connect in time still runs: its publishes wait in mqtt.js and go on reconnect.
      setTimeout(resolve, 30_000).unref();
    });
  }

  /** Publishes a batch every interval from `firstAt` until `endAt`; `slip` gets how late each left. */
  start(options: FleetOptions, firstAt: number, endAt: number, slip: Latencies, ackLatency: Latencies): void {
    let due = firstAt;
    const tick = () => {
      const now = Date.now();
      if (now >= endAt) return;
      slip.add(now - due);
      this.publish(options, ackLatency);
      due += options.intervalMs;
      this.timer = setTimeout(tick, Math.max(0, due - Date.now()));
    };
    this.timer = setTimeout(tick, Math.max(0, firstAt - Date.now()));
  }

  stop(): void {
    clearTimeout(this.timer);
  }

  private publish(options: FleetOptions, ackLatency: Latencies): void {
    const client = this.client;
    if (!client) return;
    const now = Date.now();
    const count = options.samplesPerBatch;
    const step = Math.floor(options.intervalMs / count);
    const firstSeq = this.nextSeq;
    this.nextSeq += count;
    const batch: TelemetryBatch = {
      v: 1,
      boot: this.boot,
      samples: Array.from({ length: count }, (_, i) => ({
        seq: firstSeq + i,
        ts: now - (count - 1 - i) * step,
        m: { temperature: 20 + ((firstSeq + i) % 100) / 10, pressure: 100_000 + ((firstSeq + i) % 500) },
      })),
    };
    const lastTs = now;
    this.sent++;
    this.pending++;
    const sentAt = performance.now();
    client.publish(topics.telemetry(this.deviceId), JSON.stringify(batch), { qos: 1 }, (error) => {
      this.pending--;
      if (!error) {
        ackLatency.add(performance.now() - sentAt);
        this.acked.push({ firstSeq, count, lastTs, ackedAt: Date.now(), visible: false });
      }
      if (this.pending === 0) this.idle?.();
    });
  }

  /** Resolves once every publish is acknowledged (or failed), or after `timeoutMs`. */
  async settled(timeoutMs: number): Promise<void> {
    if (this.pending === 0) return;
    // The timer ends with the wait: a pending one would keep the process alive after the run.
    const settled = new AbortController();
    await Promise.race([new Promise<void>((resolve) => (this.idle = resolve)), sleepUnless(timeoutMs, settled.signal)]);
    settled.abort();
  }

  /** Disconnects; `force` drops what is still in flight instead of waiting for it. */
  async end(force = false): Promise<void> {
    const client = this.client;
    this.client = undefined;
    if (!client) return;
    await new Promise<void>((resolve) => client.end(force, {}, () => resolve()));
  }
}

interface RawSample {
  boot: number;
  seq: number;
}

/** Checks one device's stored history against what it got acknowledged. */
async function verifyDevice(
  api: Api,
  device: FleetDevice,
  boot: number,
  from: number,
  to: number,
): Promise<{ missing: number; duplicated: number; distinct: number }> {
  const seen = new Map<number, number>();
  for (let start = from; start < to; start += HOUR_MS) {
    const end = Math.min(to, start + HOUR_MS);
    const { body } = await api.call(
      "GET",
      `/api/devices/${encodeURIComponent(device.deviceId)}/telemetry?from=${start}&to=${end}&resolution=raw`,
    );
    for (const { boot: sampleBoot, seq } of (body as { samples: RawSample[] }).samples) {
      if (sampleBoot === boot) seen.set(seq, (seen.get(seq) ?? 0) + 1);
    }
  }
  let missing = 0;
  for (const { firstSeq, count } of device.acked) {
    for (let seq = firstSeq; seq < firstSeq + count; seq++) if (!seen.has(seq)) missing++;
  }
  let duplicated = 0;
  for (const copies of seen.values()) duplicated += copies - 1;
  return { missing, duplicated, distinct: seen.size };
}

/** Each device's counters as the cloud keeps them: distinct samples stored, and copies received again. */
async function sampleCounters(
  api: Api,
  devices: FleetDevice[],
): Promise<Map<string, { stored: number; duplicates: number }>> {
  const counters = new Map<string, { stored: number; duplicates: number }>();
  // As many ids a call as the API takes in `deviceIds`.
  for (let i = 0; i < devices.length; i += LATEST_LISTED_MAX) {
    const slice = devices.slice(i, i + LATEST_LISTED_MAX);
    const { body } = await api.call(
      "GET",
      `/api/telemetry/latest?deviceIds=${slice.map((device) => device.deviceId).join(",")}`,
    );
    for (const item of (body as { items: Array<{ deviceId: string; samples: { stored: number; duplicates: number } }> })
      .items) {
      counters.set(item.deviceId, item.samples);
    }
  }
  return counters;
}

/** Everything a run keeps between its phases. */
interface Publishing {
  startedAt: number;
  /** Devices connected when publishing began. */
  connected: number;
  publishedFor: number;
  cpuMs: number;
  eventLoopP99Ms: number;
}

/**
 * One load run in three phases, so a test can act on the platform in between (stop its database,
 * restart it): `prepare` (devices created and connected), `publish` (the load, with the probes),
 * `finish` (settle, verify, report). `runFleet` runs the three.
 */
export class FleetRun {
  private readonly slip = new Latencies();
  private readonly ackLatency = new Latencies();
  private readonly applyLag = new Latencies();
  private readonly lagThirds: [Latencies, Latencies] = [new Latencies(), new Latencies()];
  private readonly apiLatency = {
    health: { latencies: new Latencies(), failures: 0 },
    deviceList: { latencies: new Latencies(), failures: 0 },
    history24h: { latencies: new Latencies(), failures: 0 },
  };
  private readonly probes: FleetDevice[];
  private publishing: Publishing | undefined;
  /** Aborted when publishing ends (or the run is closed): stops the probes and the schedule. */
  private readonly done = new AbortController();

  private constructor(
    private readonly options: FleetOptions,
    private readonly api: Api,
    private readonly devices: FleetDevice[],
    private readonly boot: number,
    /** The cloud's counters before the run: devices kept from earlier runs are judged on the difference. */
    private readonly before: Map<string, { stored: number; duplicates: number }>,
  ) {
    const every = Math.max(1, Math.floor(devices.length / LAG_PROBE_DEVICES));
    this.probes = devices.filter((_, i) => i % every === 0);
  }

  /** Logs in, creates (or re-tokens) the devices through the API and connects them. */
  static async prepare(options: FleetOptions): Promise<FleetRun> {
    checkFleetOptions(options);
    const api = new Api(options.cloudUrl);
    await api.login(options.admin.email, options.admin.password);
    // A boot of its own per run, so runs against the same devices never share (boot, seq).
    const boot = Math.floor(Date.now() / 1000);
    options.log(`creating ${options.devices} devices through the API`);
    const ids = Array.from({ length: options.devices }, (_, i) => `${options.idPrefix}-${String(i).padStart(5, "0")}`);
    const devices: FleetDevice[] = [];
    await eachLimited(ids, CREATE_CONCURRENCY, async (deviceId) => {
      devices.push(new FleetDevice(deviceId, await api.deviceToken(deviceId), boot));
    });
    devices.sort((a, b) => (a.deviceId < b.deviceId ? -1 : 1));
    const run = new FleetRun(options, api, devices, boot, await sampleCounters(api, devices));
    options.log(`connecting ${options.devices} devices at ${options.connectPerSecond}/s`);
    const connecting: Array<Promise<void>> = [];
    for (const [i, device] of devices.entries()) {
      connecting.push(device.connect(options));
      if ((i + 1) % options.connectPerSecond === 0) await sleep(1_000);
    }
    await Promise.all(connecting);
    return run;
  }

  get connected(): number {
    return this.devices.filter((device) => device.connected).length;
  }

  /** Batches acknowledged so far. */
  get batchesAcked(): number {
    return this.devices.reduce((sum, device) => sum + device.acked.length, 0);
  }

  /** Publishes for the run's duration, polling apply lag and the API meanwhile. */
  async publish(): Promise<void> {
    const { options, devices } = this;
    options.log(`${this.connected} of ${options.devices} connected; publishing for ${options.durationMs / 1000} s`);
    const eventLoop = monitorEventLoopDelay({ resolution: 20 });
    eventLoop.enable();
    const cpuBefore = process.cpuUsage();
    const startedAt = Date.now();
    const connected = this.connected;
    this.publishing = { startedAt, connected, publishedFor: 0, cpuMs: 0, eventLoopP99Ms: 0 };
    const endAt = startedAt + options.durationMs;
    // Spread over the interval, so the load is even rather than one burst per interval.
    for (const [i, device] of devices.entries()) {
      const firstAt = startedAt + Math.floor((i * options.intervalMs) / devices.length);
      device.start(options, firstAt, endAt, this.slip, this.ackLatency);
    }
    const { done } = this;
    const loop = async (everyMs: number, work: () => Promise<unknown>) => {
      while (!done.signal.aborted) {
        await work();
        await sleepUnless(everyMs, done.signal);
      }
    };
    const loops = [
      loop(LAG_PROBE_INTERVAL_MS, () =>
        this.pollLag().catch((error: unknown) => options.log(`apply-lag probe failed: ${String(error)}`)),
      ),
      loop(API_PROBE_INTERVAL_MS, () => this.probeApi()),
      loop(PROGRESS_INTERVAL_MS, async () => {
        const elapsed = Math.round((Date.now() - startedAt) / 1000);
        if (elapsed > 0) {
          options.log(
            `${elapsed} s: ${this.batchesAcked} batches acknowledged, apply lag ${formatSummary(this.applyLag.summary())}`,
          );
        }
      }),
    ];
    await sleepUnless(Math.max(0, endAt - Date.now()), done.signal);
    done.abort();
    for (const device of devices) device.stop();
    await Promise.all(loops);
    const cpu = process.cpuUsage(cpuBefore);
    eventLoop.disable();
    this.publishing = {
      startedAt,
      connected,
      publishedFor: (Date.now() - startedAt) / 1000,
      cpuMs: (cpu.user + cpu.system) / 1000,
      eventLoopP99Ms: eventLoop.percentile(99) / 1e6,
    };
  }

  /** Waits for the last acknowledgements and for the cloud to apply everything, then verifies and reports. */
  async finish(): Promise<FleetReport> {
    const { options, devices, api, before } = this;
    const publishing = this.publishing;
    if (!publishing) throw new FleetError("finish() before publish()");
    options.log("waiting for the last acknowledgements and for the cloud to apply everything");
    const settleDeadline = Date.now() + options.settleTimeoutMs;
    await Promise.all(devices.map((device) => device.settled(Math.max(0, settleDeadline - Date.now()))));
    const lastPublish = Date.now();
    while (Date.now() < settleDeadline && !(await this.pollLag().catch(() => false))) {
      await sleep(LAG_PROBE_INTERVAL_MS);
    }
    // The probes are applied; every device is once its stored counter covers what it got acknowledged.
    const appliedAll = async () => {
      const counters = await sampleCounters(api, devices);
      return devices.every((device) => this.storedSince(counters, device) >= ackedSamples(device));
    };
    while (Date.now() < settleDeadline && !(await appliedAll().catch(() => false))) await sleep(1_000);
    const drainSeconds = (Date.now() - lastPublish) / 1000;
    await Promise.all(devices.map((device) => device.end()));

    options.log("verifying every acknowledged sample through the API");
    const from = publishing.startedAt - 2 * options.intervalMs - 60_000;
    const to = Date.now() + 60_000;
    let missing = 0;
    let duplicated = 0;
    let counterMismatches = 0;
    let resent = 0;
    const after = await sampleCounters(api, devices);
    await eachLimited(devices, VERIFY_CONCURRENCY, async (device) => {
      const result = await verifyDevice(api, device, this.boot, from, to);
      missing += result.missing;
      duplicated += result.duplicated;
      // The cloud's own count of what it stored for this run must be what the history holds.
      if (this.storedSince(after, device) !== result.distinct) counterMismatches++;
      resent += (after.get(device.deviceId)?.duplicates ?? 0) - (before.get(device.deviceId)?.duplicates ?? 0);
    });

    const samplesAcked = devices.reduce((sum, device) => sum + ackedSamples(device), 0);
    const withFailures = (entry: { latencies: Latencies; failures: number }) => ({
      ...entry.latencies.summary(),
      failures: entry.failures,
    });
    return {
      devices: options.devices,
      connected: publishing.connected,
      batchesSent: devices.reduce((sum, device) => sum + device.sent, 0),
      batchesAcked: this.batchesAcked,
      samplesAcked,
      missing,
      duplicated,
      counterMismatches,
      resent,
      ackedPerSecond: samplesAcked / publishing.publishedFor,
      ackLatency: this.ackLatency.summary(),
      applyLag: this.applyLag.summary(),
      applyLagThirds: [this.lagThirds[0].summary(), this.lagThirds[1].summary()],
      api: {
        health: withFailures(this.apiLatency.health),
        deviceList: withFailures(this.apiLatency.deviceList),
        history24h: withFailures(this.apiLatency.history24h),
      },
      publishSlip: this.slip.summary(),
      generator: {
        cpuPercent: (publishing.cpuMs / (publishing.publishedFor * 1000)) * 100,
        eventLoopDelayP99Ms: publishing.eventLoopP99Ms,
      },
      drainSeconds,
    };
  }

  /** Ends the run where it stands (a test that failed midway): no more publishes, connections closed. */
  async close(): Promise<void> {
    this.done.abort();
    for (const device of this.devices) device.stop();
    await Promise.all(this.devices.map((device) => device.end(true)));
  }

  private storedSince(counters: Map<string, { stored: number }>, device: FleetDevice): number {
    return (counters.get(device.deviceId)?.stored ?? 0) - (this.before.get(device.deviceId)?.stored ?? 0);
  }

  /** Marks the probe devices' batches the API now shows; true once every acknowledged one is visible. */
  private async pollLag(): Promise<boolean> {
    const { body } = await this.api.call(
      "GET",
      `/api/telemetry/latest?deviceIds=${this.probes.map((device) => device.deviceId).join(",")}`,
    );
    const now = Date.now();
    const startedAt = this.publishing?.startedAt ?? now;
    const newest = new Map<string, number>();
    for (const item of (body as { items: Array<{ deviceId: string; metrics: Record<string, { ts: number }> }> })
      .items) {
      newest.set(item.deviceId, Math.max(0, ...Object.values(item.metrics).map(({ ts }) => ts)));
    }
    let allVisible = true;
    for (const device of this.probes) {
      const latest = newest.get(device.deviceId) ?? 0;
      for (const batch of device.acked) {
        if (batch.visible) continue;
        if (batch.lastTs > latest) {
          allVisible = false;
          continue;
        }
        batch.visible = true;
        const lag = now - batch.ackedAt;
        this.applyLag.add(lag);
        const share = (batch.ackedAt - startedAt) / this.options.durationMs;
        if (share < 1 / 3) this.lagThirds[0].add(lag);
        else if (share >= 2 / 3 && share <= 1) this.lagThirds[1].add(lag);
      }
    }
    return allVisible;
  }

  /** One round of the API calls an operator makes while the fleet reports, timed. */
  private async probeApi(): Promise<void> {
    const now = Date.now();
    const device = this.probes[Math.floor(Math.random() * this.probes.length)] as FleetDevice;
    const checks: Array<[keyof FleetRun["apiLatency"], string]> = [
      ["health", "/api/health"],
      ["deviceList", `/api/devices?limit=${DASHBOARD_PAGE}`],
      ["history24h", `/api/devices/${device.deviceId}/telemetry?from=${now - 24 * HOUR_MS}&to=${now}`],
    ];
    for (const [name, path] of checks) {
      const { ms, ok } = await this.api.timed(path);
      this.apiLatency[name].latencies.add(ms);
      if (!ok) this.apiLatency[name].failures++;
    }
  }
}

function ackedSamples(device: FleetDevice): number {
  return device.acked.reduce((sum, batch) => sum + batch.count, 0);
}

export async function runFleet(options: FleetOptions): Promise<FleetReport> {
  const run = await FleetRun.prepare(options);
  await run.publish();
  return run.finish();
}
