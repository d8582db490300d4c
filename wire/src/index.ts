// The wire contract between device, gateway and cloud: MQTT topics, payload
// shapes and their validation. It runs on the ESP32 too, so it uses no Node or
// browser APIs, allocates little, and is a single module with no imports.

export const WIRE_VERSION = 1;

/** Limits every layer enforces; a device must stay within them. */
// Frozen so the XS linker can keep preloaded tables in flash on the device.
export const LIMITS = Object.freeze({
  deviceIdLength: 64,
  samplesPerBatch: 100,
  metricsPerSample: 32,
  metricNameLength: 32,
  payloadBytes: 64 * 1024,
  firmwareVersionLength: 32,
} as const);

const DEVICE_ID = /^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/;
const METRIC_NAME = /^[a-z][a-z0-9_]{0,31}$/;

export type TopicKind =
  | "telemetry"
  | "telemetry/ack"
  | "state"
  | "cmd"
  | "cmd/ack"
  | "log"
  | "plugin"
  // Signed artifacts (firmware, plugins, models): @kestrel/wire/artifacts has their payloads.
  | "artifact"
  | "artifact/get"
  | "artifact/chunk"
  | "artifact/status";

export const topics = Object.freeze({
  telemetry: (deviceId: string): string => `d/${deviceId}/telemetry`,
  telemetryAck: (deviceId: string): string => `d/${deviceId}/telemetry/ack`,
  state: (deviceId: string): string => `d/${deviceId}/state`,
  command: (deviceId: string): string => `d/${deviceId}/cmd`,
  commandAck: (deviceId: string): string => `d/${deviceId}/cmd/ack`,
  log: (deviceId: string): string => `d/${deviceId}/log`,
  /** Downlink: a signed plugin to install (PluginPackage). */
  plugin: (deviceId: string): string => `d/${deviceId}/plugin`,
});

export interface ParsedTopic {
  deviceId: string;
  kind: TopicKind;
}

/** Splits `d/{id}/{kind}`; returns undefined for anything outside the device namespace. */
export function parseTopic(topic: string): ParsedTopic | undefined {
  if (!topic.startsWith("d/")) return undefined;
  const slash = topic.indexOf("/", 2);
  if (slash < 0) return undefined;
  const deviceId = topic.slice(2, slash);
  if (!isDeviceId(deviceId)) return undefined;
  const kind = topic.slice(slash + 1);
  switch (kind) {
    case "telemetry":
    case "telemetry/ack":
    case "state":
    case "cmd":
    case "cmd/ack":
    case "log":
    case "plugin":
    case "artifact":
    case "artifact/get":
    case "artifact/chunk":
    case "artifact/status":
      return { deviceId, kind };
    default:
      return undefined;
  }
}

export function isDeviceId(value: unknown): value is string {
  return typeof value === "string" && DEVICE_ID.test(value);
}

export function isMetricName(value: string): boolean {
  return METRIC_NAME.test(value);
}

/** One reading: device-local sequence number, epoch milliseconds, metric values. */
export interface TelemetrySample {
  seq: number;
  ts: number;
  m: Record<string, number>;
}

/**
 * Payload of `d/{id}/telemetry` (QoS 1). `boot` is the device's boot counter;
 * (device, boot, seq) identifies a sample everywhere, so every layer can
 * deduplicate retries.
 */
export interface TelemetryBatch {
  v: 1;
  boot: number;
  samples: TelemetrySample[];
}

export type ResetReason = "power-on" | "watchdog" | "crash" | "ota" | "command" | "brownout" | "unknown";

/** "safe": the device is in boot-loop safe mode, keeping only connectivity, commands and OTA. */
export type DeviceMode = "normal" | "safe";

const RESET_REASONS: readonly string[] = Object.freeze([
  "power-on",
  "watchdog",
  "crash",
  "ota",
  "command",
  "brownout",
  "unknown",
]);

/** Payload of `d/{id}/state` (retained). The last will is `{ v: 1, online: false }`. */
export interface DeviceState {
  v: 1;
  online: boolean;
  fw?: string;
  boot?: number;
  uptime?: number;
  heap?: number;
  rssi?: number;
  reset?: ResetReason;
  mode?: DeviceMode;
  /** Samples the device's offline buffer dropped (oldest first, when full) since it booted. */
  dropped?: number;
  /** The plugins installed on the device, when any are. */
  plugins?: PluginStatus[];
}

export interface WireError {
  code: string;
  message: string;
}

export type Parsed<T> = { ok: true; value: T } | { ok: false; error: WireError };

// The validation helpers below are shared with the wire's other modules (@kestrel/wire/artifacts).
export function fail<T>(code: string, message: string): Parsed<T> {
  return { ok: false, error: { code, message } };
}

export function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

export function isUint(value: unknown, max: number): value is number {
  return typeof value === "number" && Number.isInteger(value) && value >= 0 && value <= max;
}

export function parseJson(text: string): Parsed<unknown> {
  if (text.length > LIMITS.payloadBytes)
    return fail("payload_too_large", `payload exceeds ${LIMITS.payloadBytes} bytes`);
  try {
    return { ok: true, value: JSON.parse(text) };
  } catch {
    return fail("invalid_json", "payload is not valid JSON");
  }
}

/** 2000-01-01: a device clock before this was never set (no SNTP yet); its samples are refused. */
export const CLOCK_VALID_FROM_MS = 946684800000;
const MIN_TS = CLOCK_VALID_FROM_MS;
// 2100-01-01.
const MAX_TS = 4102444800000;

function validateSample(raw: unknown, index: number): Parsed<TelemetrySample> {
  if (!isObject(raw)) return fail("invalid_sample", `samples[${index}] must be an object`);
  if (!isUint(raw.seq, 0xffffffff)) return fail("invalid_sample", `samples[${index}].seq must be an integer 0..2^32-1`);
  if (!isUint(raw.ts, MAX_TS) || raw.ts < MIN_TS)
    return fail("invalid_sample", `samples[${index}].ts must be epoch milliseconds between 2000 and 2100`);
  if (!isObject(raw.m)) return fail("invalid_sample", `samples[${index}].m must be an object of metric values`);
  const names = Object.keys(raw.m);
  if (names.length === 0 || names.length > LIMITS.metricsPerSample)
    return fail("invalid_sample", `samples[${index}].m must hold 1..${LIMITS.metricsPerSample} metrics`);
  for (const name of names) {
    if (!isMetricName(name)) return fail("invalid_metric", `samples[${index}].m has an invalid metric name "${name}"`);
    const value = raw.m[name];
    if (typeof value !== "number" || !Number.isFinite(value))
      return fail("invalid_metric", `samples[${index}].m.${name} must be a finite number`);
  }
  return { ok: true, value: { seq: raw.seq, ts: raw.ts, m: raw.m as Record<string, number> } };
}

/** Validates a telemetry batch already decoded from JSON. */
export function validateTelemetryBatch(raw: unknown): Parsed<TelemetryBatch> {
  if (!isObject(raw)) return fail("invalid_batch", "telemetry batch must be a JSON object");
  if (raw.v !== WIRE_VERSION) return fail("unsupported_version", `telemetry batch v must be ${WIRE_VERSION}`);
  if (!isUint(raw.boot, 0xffffffff)) return fail("invalid_batch", "boot must be an integer 0..2^32-1");
  if (!Array.isArray(raw.samples) || raw.samples.length === 0 || raw.samples.length > LIMITS.samplesPerBatch)
    return fail("invalid_batch", `samples must be an array of 1..${LIMITS.samplesPerBatch} samples`);
  const samples: TelemetrySample[] = [];
  for (let i = 0; i < raw.samples.length; i++) {
    const sample = validateSample(raw.samples[i], i);
    if (!sample.ok) return sample;
    samples.push(sample.value);
  }
  return { ok: true, value: { v: WIRE_VERSION, boot: raw.boot, samples } };
}

export function parseTelemetryBatch(text: string): Parsed<TelemetryBatch> {
  const json = parseJson(text);
  return json.ok ? validateTelemetryBatch(json.value) : json;
}

/**
 * Payload of `d/{id}/telemetry/ack` (gateway → device, QoS 0), cumulative: every telemetry batch of
 * this device up to and including the one whose boot and last sample seq are (boot, seq), ordered by
 * boot then seq, that the gateway received is durable there. The device releases a batch only then.
 */
export interface TelemetryAck {
  v: 1;
  boot: number;
  seq: number;
}

/** Validates a telemetry ack already decoded from JSON. */
export function validateTelemetryAck(raw: unknown): Parsed<TelemetryAck> {
  if (!isObject(raw)) return fail("invalid_telemetry_ack", "telemetry ack must be a JSON object");
  if (raw.v !== WIRE_VERSION) return fail("unsupported_version", `telemetry ack v must be ${WIRE_VERSION}`);
  if (!isUint(raw.boot, 0xffffffff)) return fail("invalid_telemetry_ack", "boot must be an integer 0..2^32-1");
  if (!isUint(raw.seq, 0xffffffff)) return fail("invalid_telemetry_ack", "seq must be an integer 0..2^32-1");
  return { ok: true, value: { v: WIRE_VERSION, boot: raw.boot, seq: raw.seq } };
}

export function parseTelemetryAck(text: string): Parsed<TelemetryAck> {
  const json = parseJson(text);
  return json.ok ? validateTelemetryAck(json.value) : json;
}

/** Validates a device state already decoded from JSON. */
export function validateDeviceState(raw: unknown): Parsed<DeviceState> {
  if (!isObject(raw)) return fail("invalid_state", "device state must be a JSON object");
  if (raw.v !== WIRE_VERSION) return fail("unsupported_version", `device state v must be ${WIRE_VERSION}`);
  if (typeof raw.online !== "boolean") return fail("invalid_state", "online must be a boolean");
  const state: DeviceState = { v: WIRE_VERSION, online: raw.online };
  if (raw.fw !== undefined) {
    if (typeof raw.fw !== "string" || raw.fw.length === 0 || raw.fw.length > LIMITS.firmwareVersionLength)
      return fail("invalid_state", `fw must be a string of 1..${LIMITS.firmwareVersionLength} characters`);
    state.fw = raw.fw;
  }
  if (raw.boot !== undefined) {
    if (!isUint(raw.boot, 0xffffffff)) return fail("invalid_state", "boot must be an integer 0..2^32-1");
    state.boot = raw.boot;
  }
  if (raw.uptime !== undefined) {
    if (!isUint(raw.uptime, 0xffffffff)) return fail("invalid_state", "uptime must be whole seconds");
    state.uptime = raw.uptime;
  }
  if (raw.heap !== undefined) {
    if (!isUint(raw.heap, 0xffffffff)) return fail("invalid_state", "heap must be a byte count");
    state.heap = raw.heap;
  }
  if (raw.rssi !== undefined) {
    if (typeof raw.rssi !== "number" || !Number.isInteger(raw.rssi) || raw.rssi < -127 || raw.rssi > 0)
      return fail("invalid_state", "rssi must be an integer dBm between -127 and 0");
    state.rssi = raw.rssi;
  }
  if (raw.reset !== undefined) {
    if (typeof raw.reset !== "string" || !RESET_REASONS.includes(raw.reset))
      return fail("invalid_state", `reset must be one of ${RESET_REASONS.join(", ")}`);
    state.reset = raw.reset as ResetReason;
  }
  if (raw.mode !== undefined) {
    if (raw.mode !== "normal" && raw.mode !== "safe") return fail("invalid_state", "mode must be normal or safe");
    state.mode = raw.mode;
  }
  if (raw.dropped !== undefined) {
    if (!isUint(raw.dropped, 0xffffffff)) return fail("invalid_state", "dropped must be a sample count");
    state.dropped = raw.dropped;
  }
  if (raw.plugins !== undefined) {
    const plugins = validatePluginStatuses(raw.plugins);
    if (!plugins.ok) return plugins;
    state.plugins = plugins.value;
  }
  return { ok: true, value: state };
}

export function parseDeviceState(text: string): Parsed<DeviceState> {
  const json = parseJson(text);
  return json.ok ? validateDeviceState(json.value) : json;
}

/** The last will a device registers when it connects. */
export const OFFLINE_STATE: Readonly<DeviceState> = Object.freeze({ v: WIRE_VERSION, online: false });

export type LogLevel = "debug" | "info" | "warn" | "error";

const LOG_LEVELS: readonly string[] = Object.freeze(["debug", "info", "warn", "error"]);

export const LOG_LIMITS = Object.freeze({
  recordsPerBatch: 50,
  /** Characters of msg and of each string field. */
  textLength: 512,
  tagLength: 32,
  fieldsPerRecord: 32,
} as const);

/**
 * One device log record: `boot` and `seq` identify it (seq counts from 0 at every boot), `ts` is
 * the device clock (before SNTP it can read 1970), `tag` names the firmware module. Every other
 * property is a field of the record (string, number or boolean).
 */
export interface LogRecord {
  boot: number;
  seq: number;
  ts: number;
  level: LogLevel;
  tag: string;
  msg: string;
  [field: string]: string | number | boolean;
}

/**
 * Payload of `d/{id}/log` (QoS 1): records in the order the device logged them. `dropped` counts
 * records the device lost (its log ring full) since the batch before.
 */
export interface LogBatch {
  v: 1;
  dropped?: number;
  records: LogRecord[];
}

const LOG_TAG = /^[A-Za-z0-9_.-]{1,32}$/;
const LOG_FIELD = /^[A-Za-z_][A-Za-z0-9_]{0,31}$/;

function validateLogRecord(raw: unknown, index: number): Parsed<LogRecord> {
  const at = `records[${index}]`;
  if (!isObject(raw)) return fail("invalid_log", `${at} must be an object`);
  if (!isUint(raw.boot, 0xffffffff)) return fail("invalid_log", `${at}.boot must be an integer 0..2^32-1`);
  if (!isUint(raw.seq, 0xffffffff)) return fail("invalid_log", `${at}.seq must be an integer 0..2^32-1`);
  if (!isUint(raw.ts, MAX_TS)) return fail("invalid_log", `${at}.ts must be epoch milliseconds before 2100`);
  if (typeof raw.level !== "string" || !LOG_LEVELS.includes(raw.level))
    return fail("invalid_log", `${at}.level must be one of ${LOG_LEVELS.join(", ")}`);
  if (typeof raw.tag !== "string" || !LOG_TAG.test(raw.tag))
    return fail("invalid_log", `${at}.tag must be 1..${LOG_LIMITS.tagLength} letters, digits, _ . or -`);
  if (typeof raw.msg !== "string" || raw.msg.length > LOG_LIMITS.textLength)
    return fail("invalid_log", `${at}.msg must be a string of at most ${LOG_LIMITS.textLength} characters`);
  const keys = Object.keys(raw);
  if (keys.length > LOG_LIMITS.fieldsPerRecord + 6)
    return fail("invalid_log", `${at} has more than ${LOG_LIMITS.fieldsPerRecord} fields`);
  for (const key of keys) {
    const value = raw[key];
    if (!LOG_FIELD.test(key)) return fail("invalid_log", `${at} has an invalid field name "${key}"`);
    const valid =
      typeof value === "boolean" ||
      (typeof value === "number" && Number.isFinite(value)) ||
      (typeof value === "string" && value.length <= LOG_LIMITS.textLength);
    if (!valid) return fail("invalid_log", `${at}.${key} must be a boolean, a finite number or a short string`);
  }
  return { ok: true, value: raw as LogRecord };
}

/** Validates a log batch already decoded from JSON. */
export function validateLogBatch(raw: unknown): Parsed<LogBatch> {
  if (!isObject(raw)) return fail("invalid_log", "log batch must be a JSON object");
  if (raw.v !== WIRE_VERSION) return fail("unsupported_version", `log batch v must be ${WIRE_VERSION}`);
  if (raw.dropped !== undefined && !isUint(raw.dropped, 0xffffffff))
    return fail("invalid_log", "dropped must be a record count");
  if (!Array.isArray(raw.records) || raw.records.length === 0 || raw.records.length > LOG_LIMITS.recordsPerBatch)
    return fail("invalid_log", `records must be an array of 1..${LOG_LIMITS.recordsPerBatch} records`);
  const records: LogRecord[] = [];
  for (let i = 0; i < raw.records.length; i++) {
    const record = validateLogRecord(raw.records[i], i);
    if (!record.ok) return record;
    records.push(record.value);
  }
  const batch: LogBatch = { v: WIRE_VERSION, records };
  if (raw.dropped !== undefined) batch.dropped = raw.dropped;
  return { ok: true, value: batch };
}

export function parseLogBatch(text: string): Parsed<LogBatch> {
  const json = parseJson(text);
  return json.ok ? validateLogBatch(json.value) : json;
}

/** Gateway → cloud, `POST /api/gateway/v1/ingest`: what devices published, already validated by the gateway. */
export interface IngestRequest {
  telemetry: Array<{ deviceId: string; batch: TelemetryBatch }>;
  states: Array<{ deviceId: string; receivedAt: number; state: DeviceState }>;
  /** Device log batches; absent from gateways that predate them. */
  logs?: Array<{ deviceId: string; receivedAt: number; batch: LogBatch }>;
}

/** One item the cloud refused (the rest of the request is stored). */
export interface IngestRejection {
  kind: "telemetry" | "state" | "log";
  index: number;
  deviceId: string;
  code: string;
  message: string;
}

/**
 * The cloud's answer to an ingest request: `accepted` telemetry samples are durable in the cloud
 * (a sample it already had is found, counted and dropped later, when it is applied).
 */
export interface IngestResult {
  accepted: number;
  rejected: IngestRejection[];
}

/** Commands a device understands (payload of `d/{id}/cmd`). */
export const COMMAND_NAMES = Object.freeze([
  "reboot",
  "set-config",
  "ping",
  "identify",
  "plugin-enable",
  "plugin-disable",
  "plugin-remove",
  "plugin-config",
] as const);

export type CommandName = (typeof COMMAND_NAMES)[number];

const COMMAND_ID = /^[A-Za-z0-9_-]{1,64}$/;

/**
 * Payload of `d/{id}/cmd` (QoS 1). `id` is unique per device: a device that sees an id again
 * re-sends its last ack without executing twice. A command past `expiresAt` (epoch ms) is refused.
 */
export interface DeviceCommand {
  v: 1;
  id: string;
  name: CommandName;
  params?: Record<string, string | number | boolean>;
  expiresAt?: number;
}

export type CommandAckStatus = "accepted" | "done" | "failed";

const ACK_STATUSES: readonly string[] = Object.freeze(["accepted", "done", "failed"]);

/** Payload of `d/{id}/cmd/ack` (QoS 1): `accepted` first, then `done` or `failed` with a reason. */
export interface CommandAck {
  v: 1;
  id: string;
  status: CommandAckStatus;
  reason?: string;
  result?: Record<string, string | number | boolean>;
}

function isFlatRecord(value: unknown): value is Record<string, string | number | boolean> {
  if (!isObject(value)) return false;
  const keys = Object.keys(value);
  if (keys.length > 32) return false;
  for (const key of keys) {
    if (!isMetricName(key)) return false;
    const item = value[key];
    if (typeof item === "string" ? item.length > 256 : typeof item !== "boolean" && !Number.isFinite(item))
      return false;
  }
  return true;
}

export function validateDeviceCommand(raw: unknown): Parsed<DeviceCommand> {
  if (!isObject(raw)) return fail("invalid_command", "command must be a JSON object");
  if (raw.v !== WIRE_VERSION) return fail("unsupported_version", `command v must be ${WIRE_VERSION}`);
  if (typeof raw.id !== "string" || !COMMAND_ID.test(raw.id))
    return fail("invalid_command", "id must be 1..64 characters of A-Z a-z 0-9 _ -");
  if (typeof raw.name !== "string" || !(COMMAND_NAMES as readonly string[]).includes(raw.name))
    return fail("unknown_command", `name must be one of ${COMMAND_NAMES.join(", ")}`);
  const command: DeviceCommand = { v: WIRE_VERSION, id: raw.id, name: raw.name as CommandName };
  if (raw.params !== undefined) {
    if (!isFlatRecord(raw.params))
      return fail("invalid_command", "params must be an object of at most 32 string, number or boolean values");
    command.params = raw.params;
  }
  if (raw.expiresAt !== undefined) {
    if (!isUint(raw.expiresAt, MAX_TS)) return fail("invalid_command", "expiresAt must be epoch milliseconds");
    command.expiresAt = raw.expiresAt;
  }
  return { ok: true, value: command };
}

export function parseDeviceCommand(text: string): Parsed<DeviceCommand> {
  const json = parseJson(text);
  return json.ok ? validateDeviceCommand(json.value) : json;
}

export function validateCommandAck(raw: unknown): Parsed<CommandAck> {
  if (!isObject(raw)) return fail("invalid_ack", "command ack must be a JSON object");
  if (raw.v !== WIRE_VERSION) return fail("unsupported_version", `command ack v must be ${WIRE_VERSION}`);
  if (typeof raw.id !== "string" || !COMMAND_ID.test(raw.id)) return fail("invalid_ack", "id is not a command id");
  if (typeof raw.status !== "string" || !ACK_STATUSES.includes(raw.status))
    return fail("invalid_ack", `status must be one of ${ACK_STATUSES.join(", ")}`);
  const ack: CommandAck = { v: WIRE_VERSION, id: raw.id, status: raw.status as CommandAckStatus };
  if (raw.reason !== undefined) {
    if (typeof raw.reason !== "string" || raw.reason.length > 256)
      return fail("invalid_ack", "reason must be a string of at most 256 characters");
    ack.reason = raw.reason;
  }
  if (raw.result !== undefined) {
    if (!isFlatRecord(raw.result)) return fail("invalid_ack", "result must be a flat object of at most 32 values");
    ack.result = raw.result;
  }
  return { ok: true, value: ack };
}

export function parseCommandAck(text: string): Parsed<CommandAck> {
  const json = parseJson(text);
  return json.ok ? validateCommandAck(json.value) : json;
}

// --- Plugins: WebAssembly modules run by the device's wasm3 host -------------------------------

export const PLUGIN_LIMITS = Object.freeze({
  /** Plugin names are [a-z][a-z0-9]*, so "__" in a metric name always marks a plugin's metric. */
  nameLength: 12,
  metricNameLength: 16,
  metricsPerPlugin: 4,
  configEntries: 16,
  /** The module's bytes: what one storage slot on the device holds. */
  moduleBytes: 16 * 1024,
  versionLength: 32,
  keyIdLength: 32,
  statusReasonLength: 200,
  /** Plugins installed on a device at once (each keeps its previous version too). */
  perDevice: 4,
} as const);

const PLUGIN_NAME = /^[a-z][a-z0-9]{0,11}$/;
const PLUGIN_METRIC = /^[a-z](?:[a-z0-9]|_(?!_)){0,15}$/;
const PLUGIN_VERSION = /^[0-9A-Za-z.+-]{1,32}$/;
const KEY_ID = /^[A-Za-z0-9_.-]{1,32}$/;
const SHA256_HEX = /^[0-9a-f]{64}$/;
const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;
/** Between a plugin's name and its metric's in a telemetry metric name: smoothing__temperature_avg. */
export const PLUGIN_METRIC_SEPARATOR = "__";

export function isPluginName(value: unknown): value is string {
  return typeof value === "string" && PLUGIN_NAME.test(value);
}

/** The telemetry metric a plugin's metric travels as, marked as the plugin's by the separator. */
export function pluginMetricName(plugin: string, metric: string): string {
  return `${plugin}${PLUGIN_METRIC_SEPARATOR}${metric}`;
}

/** The plugin and metric a telemetry metric name stands for, or undefined for a sensor's metric. */
export function parsePluginMetricName(name: string): { plugin: string; metric: string } | undefined {
  const at = name.indexOf(PLUGIN_METRIC_SEPARATOR);
  if (at < 0) return undefined;
  const plugin = name.slice(0, at);
  const metric = name.slice(at + PLUGIN_METRIC_SEPARATOR.length);
  return PLUGIN_NAME.test(plugin) && PLUGIN_METRIC.test(metric) ? { plugin, metric } : undefined;
}

/**
 * What the signature covers (its exact JSON text is signed, ECDSA P-256 over SHA-256): the artifact
 * kind, the plugin's name and version, the SHA-256 and size of its WebAssembly bytes, the id of the
 * key that signed it, and the metrics it emits.
 */
export interface PluginManifest {
  v: 1;
  kind: "plugin";
  name: string;
  version: string;
  sha256: string;
  size: number;
  keyId: string;
  metrics: string[];
}

export function validatePluginManifest(raw: unknown): Parsed<PluginManifest> {
  if (!isObject(raw)) return fail("invalid_manifest", "plugin manifest must be a JSON object");
  if (raw.v !== WIRE_VERSION) return fail("unsupported_version", `plugin manifest v must be ${WIRE_VERSION}`);
  if (raw.kind !== "plugin") return fail("invalid_manifest", 'kind must be "plugin"');
  if (!isPluginName(raw.name))
    return fail("invalid_manifest", `name must be 1..${PLUGIN_LIMITS.nameLength} of a-z 0-9, starting with a letter`);
  if (typeof raw.version !== "string" || !PLUGIN_VERSION.test(raw.version))
    return fail("invalid_manifest", `version must be 1..${PLUGIN_LIMITS.versionLength} of 0-9 A-Z a-z . + -`);
  if (typeof raw.sha256 !== "string" || !SHA256_HEX.test(raw.sha256))
    return fail("invalid_manifest", "sha256 must be 64 lowercase hex digits");
  if (!isUint(raw.size, PLUGIN_LIMITS.moduleBytes) || raw.size === 0)
    return fail("module_too_large", `size must be 1..${PLUGIN_LIMITS.moduleBytes} bytes`);
  if (typeof raw.keyId !== "string" || !KEY_ID.test(raw.keyId))
    return fail("invalid_manifest", `keyId must be 1..${PLUGIN_LIMITS.keyIdLength} of A-Z a-z 0-9 _ . -`);
  if (
    !Array.isArray(raw.metrics) ||
    raw.metrics.length > PLUGIN_LIMITS.metricsPerPlugin ||
    !raw.metrics.every((metric) => typeof metric === "string" && PLUGIN_METRIC.test(metric)) ||
    new Set(raw.metrics).size !== raw.metrics.length
  )
    return fail(
      "invalid_manifest",
      `metrics must be at most ${PLUGIN_LIMITS.metricsPerPlugin} distinct names of a-z 0-9 _ (no "__"), 1..${PLUGIN_LIMITS.metricNameLength} long`,
    );
  return {
    ok: true,
    value: {
      v: WIRE_VERSION,
      kind: "plugin",
      name: raw.name,
      version: raw.version,
      sha256: raw.sha256,
      size: raw.size,
      keyId: raw.keyId,
      metrics: raw.metrics as string[],
    },
  };
}

export function parsePluginManifest(text: string): Parsed<PluginManifest> {
  const json = parseJson(text);
  return json.ok ? validatePluginManifest(json.value) : json;
}

/** A plugin's configuration: numbers by name, set per assignment (not signed: it is not code). */
export type PluginConfig = Record<string, number>;

function isPluginConfig(value: unknown): value is PluginConfig {
  if (!isObject(value)) return false;
  const keys = Object.keys(value);
  return (
    keys.length <= PLUGIN_LIMITS.configEntries &&
    keys.every((key) => isMetricName(key) && typeof value[key] === "number" && Number.isFinite(value[key]))
  );
}

/**
 * Payload of `d/{id}/plugin` (downlink, QoS 1): a signed plugin to install, or to upgrade the
 * installed plugin of that name to. `manifest` is the exact signed text; `signature` is base64 of
 * the 64-byte ECDSA P-256 signature (r || s) over it; `wasm` is base64 of the module.
 */
export interface PluginPackage {
  v: 1;
  manifest: string;
  signature: string;
  wasm: string;
  config?: PluginConfig;
  /** Enable once installed (the default); false installs it disabled. */
  enable?: boolean;
}

export function validatePluginPackage(raw: unknown): Parsed<PluginPackage> {
  if (!isObject(raw)) return fail("invalid_plugin_package", "plugin package must be a JSON object");
  if (raw.v !== WIRE_VERSION) return fail("unsupported_version", `plugin package v must be ${WIRE_VERSION}`);
  if (typeof raw.manifest !== "string" || raw.manifest.length > 1024)
    return fail("invalid_plugin_package", "manifest must be the signed manifest's JSON text (at most 1024 characters)");
  if (typeof raw.signature !== "string" || raw.signature.length !== 88 || !BASE64.test(raw.signature))
    return fail("invalid_plugin_package", "signature must be base64 of 64 bytes");
  const wasmLimit = Math.ceil(PLUGIN_LIMITS.moduleBytes / 3) * 4;
  if (typeof raw.wasm !== "string" || raw.wasm.length === 0 || !BASE64.test(raw.wasm))
    return fail("invalid_plugin_package", "wasm must be base64 of the module");
  if (raw.wasm.length > wasmLimit)
    return fail("module_too_large", `the module exceeds ${PLUGIN_LIMITS.moduleBytes} bytes`);
  if (raw.config !== undefined && !isPluginConfig(raw.config))
    return fail("invalid_plugin_package", `config must map at most ${PLUGIN_LIMITS.configEntries} names to numbers`);
  if (raw.enable !== undefined && typeof raw.enable !== "boolean")
    return fail("invalid_plugin_package", "enable must be a boolean");
  const value: PluginPackage = { v: WIRE_VERSION, manifest: raw.manifest, signature: raw.signature, wasm: raw.wasm };
  if (raw.config !== undefined) value.config = raw.config as PluginConfig;
  if (raw.enable !== undefined) value.enable = raw.enable;
  return { ok: true, value };
}

export function parsePluginPackage(text: string): Parsed<PluginPackage> {
  const json = parseJson(text);
  return json.ok ? validatePluginPackage(json.value) : json;
}

/** "failed": refused or stopped (trap, budget, bad module); `reason` says why. */
export type PluginState = "enabled" | "disabled" | "failed";

const PLUGIN_STATES: readonly string[] = Object.freeze(["enabled", "disabled", "failed"]);

/** One plugin as the device reports it in its state. */
export interface PluginStatus {
  name: string;
  version: string;
  state: PluginState;
  reason?: string;
  /** The version kept to roll back to. */
  previous?: string;
  /** on_sample calls since boot, and those that trapped. */
  calls: number;
  errors: number;
  /** The most budget one call used since boot (loop iterations and calls). */
  fuel: number;
}

function validatePluginStatuses(raw: unknown): Parsed<PluginStatus[]> {
  if (!Array.isArray(raw) || raw.length > PLUGIN_LIMITS.perDevice * 2)
    return fail("invalid_state", `plugins must be an array of at most ${PLUGIN_LIMITS.perDevice * 2} entries`);
  const statuses: PluginStatus[] = [];
  for (const item of raw) {
    if (
      !isObject(item) ||
      !isPluginName(item.name) ||
      typeof item.version !== "string" ||
      !PLUGIN_VERSION.test(item.version) ||
      typeof item.state !== "string" ||
      !PLUGIN_STATES.includes(item.state) ||
      !isUint(item.calls, 0xffffffff) ||
      !isUint(item.errors, 0xffffffff) ||
      !isUint(item.fuel, 0xffffffff) ||
      (item.reason !== undefined &&
        (typeof item.reason !== "string" || item.reason.length > PLUGIN_LIMITS.statusReasonLength)) ||
      (item.previous !== undefined && (typeof item.previous !== "string" || !PLUGIN_VERSION.test(item.previous)))
    )
      return fail(
        "invalid_state",
        "plugins[] must be { name, version, state, reason?, previous?, calls, errors, fuel }",
      );
    statuses.push(item as unknown as PluginStatus);
  }
  return { ok: true, value: statuses };
}
