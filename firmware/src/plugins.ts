// kestrel/plugins: the plugins installed on this device and their lifecycle. A plugin arrives as a
// signed package (d/{id}/plugin): its manifest is checked against a trusted key (ECDSA P-256), its
// bytes against the manifest's SHA-256 and size, and it must load and pass init() before it is
// stored; an upgrade that fails to start leaves the version before it running (rollback). Enabled
// plugins run on every sample; one that traps or runs out of budget is disabled with its reason.
// The modules live in the "kplugins" flash partition (one 16 KiB slot each, the current and the
// previous version of every plugin), their index in preference, so all of it survives reboots.

import {
  isPluginName,
  PLUGIN_LIMITS,
  type PluginConfig,
  type PluginManifest,
  type PluginStatus,
  parsePluginManifest,
  parsePluginPackage,
  pluginMetricName,
} from "@kestrel/wire";
import Flash from "flash";
import { sha256, verifyP256 } from "kestrel/artifact-signature";
import type Log from "kestrel/log";
import { describeError } from "kestrel/log";
import PluginRuntime, { type PluginCounters, PluginError, type PluginSample } from "kestrel/plugin-host";
import Preference from "preference";

const PREFERENCE_DOMAIN = "kplugins";
/** What DeviceState.plugins may hold (the wire's limit): installed plugins first, then the latest refusals. */
const REPORTED_STATUSES = PLUGIN_LIMITS.perDevice * 2;
const PREFERENCE_KEY = "index";
const P256_PUBLIC_KEY_BYTES = 65;
const SIGNATURE_BYTES = 64;

/** One stored version of a plugin: where its bytes are and what its manifest said. */
interface StoredVersion {
  version: string;
  slot: number;
  sha256: string;
  size: number;
  metrics: string[];
}

/** A plugin in the index (preference), with the version kept for rollback. */
interface IndexEntry extends StoredVersion {
  name: string;
  config: PluginConfig;
  enabled: boolean;
  /** Set when the plugin was stopped (trap, budget): it stays off across reboots until enabled. */
  failure?: string;
  previous?: StoredVersion;
}

/** The outcome of an operation, as a command ack reports it. */
export type PluginOutcome = { ok: true; status: PluginStatus } | { ok: false; reason: string };

const BASE64_DIGITS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/** Standard base64 (the wire's format for bytes); throws on anything else. */
export function decodeBase64(text: string): ArrayBuffer {
  const clean = text.endsWith("==") ? text.slice(0, -2) : text.endsWith("=") ? text.slice(0, -1) : text;
  if (clean.length % 4 === 1) throw new RangeError("invalid base64");
  const bytes = new Uint8Array((clean.length * 3) >> 2);
  let bits = 0;
  let value = 0;
  let at = 0;
  for (let i = 0; i < clean.length; i++) {
    const digit = BASE64_DIGITS.indexOf(clean[i] as string);
    if (digit < 0) throw new RangeError("invalid base64");
    value = (value << 6) | digit;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      bytes[at++] = (value >> bits) & 0xff;
    }
  }
  return bytes.buffer;
}

function hex(buffer: ArrayBuffer): string {
  const bytes = new Uint8Array(buffer);
  let text = "";
  for (let i = 0; i < bytes.length; i++) text += (bytes[i] as number).toString(16).padStart(2, "0");
  return text;
}

/** The plugin a package names, read leniently, so a refusal is reported under it even when the package is invalid. */
function nameIn(payload: string): string | undefined {
  try {
    const name: unknown = JSON.parse(JSON.parse(payload).manifest).name;
    return isPluginName(name) ? name : undefined;
  } catch {
    return undefined;
  }
}

/** "keyId:base64,keyId:base64" (manifest config pluginKeys): the public keys plugins may be signed with. */
export function parseTrustedKeys(text: string): Map<string, ArrayBuffer> {
  const keys = new Map<string, ArrayBuffer>();
  for (const item of text.split(",")) {
    const entry = item.trim();
    if (entry === "") continue;
    const colon = entry.indexOf(":");
    const key = colon > 0 ? decodeBase64(entry.slice(colon + 1)) : undefined;
    if (!key || key.byteLength !== P256_PUBLIC_KEY_BYTES)
      throw new RangeError(`pluginKeys: "${entry.slice(0, 40)}" is not keyId:base64 of a 65-byte P-256 public key`);
    keys.set(entry.slice(0, colon), key);
  }
  return keys;
}

export interface PluginsOptions {
  /** The flash data partition holding the modules. */
  partition: string;
  trustedKeys: ReadonlyMap<string, ArrayBuffer>;
  /** The sensors' metric names, in the order of the values each sample carries. */
  sensorNames: readonly string[];
  /** The set of metrics or a plugin's state changed: rebuild the batch rows, report the state. */
  onChange: () => void;
  log: Log;
}

export default class Plugins {
  readonly #flash: Flash;
  readonly #slots: number;
  readonly #slotBytes: number;
  readonly #keys: ReadonlyMap<string, ArrayBuffer>;
  readonly #onChange: () => void;
  readonly #log: Log;
  #index: IndexEntry[];
  #sensorNames: readonly string[];
  /** Enabled plugins that loaded, by name. */
  readonly #running = new Map<string, PluginRuntime>();
  /** Why a plugin is not running now (refused at boot, failed to upgrade, a refused package). */
  readonly #reasons = new Map<string, string>();
  /** Calls, errors and budget since boot, by plugin: kept across restarts of its runtime. */
  readonly #counters = new Map<string, PluginCounters>();

  constructor(options: PluginsOptions) {
    this.#flash = new Flash(options.partition);
    this.#slotBytes = Math.ceil(PLUGIN_LIMITS.moduleBytes / this.#flash.blockSize) * this.#flash.blockSize;
    this.#slots = Math.floor(this.#flash.byteLength / this.#slotBytes);
    this.#keys = options.trustedKeys;
    this.#onChange = options.onChange;
    this.#log = options.log;
    this.#sensorNames = options.sensorNames;
    this.#index = this.#loadIndex();
    for (const entry of this.#index) if (entry.enabled && entry.failure === undefined) this.#start(entry);
  }

  /** The telemetry metric names of the running plugins, in the order run() fills them. */
  get metricNames(): string[] {
    const names: string[] = [];
    for (const entry of this.#index)
      if (this.#running.has(entry.name))
        for (const metric of entry.metrics) names.push(pluginMetricName(entry.name, metric));
    return names;
  }

  get running(): number {
    return this.#running.size;
  }

  /**
   * Runs every running plugin on this sample: each writes its metrics into row, from offset on, in
   * the order of metricNames. A plugin that traps or exhausts its budget is stopped and disabled;
   * then run() returns true and the caller, once it has batched this sample, rebuilds its columns
   * (onChange is not called from here, so the row keeps its layout until then).
   */
  run(names: readonly string[], values: Float64Array, now: number, row: Float64Array, offset: number): boolean {
    if (this.#running.size === 0) return false;
    const sample: PluginSample = { names, values, now, row, offset };
    let stopped = false;
    for (const entry of this.#index) {
      const runtime = this.#running.get(entry.name);
      if (!runtime) continue;
      try {
        runtime.run(sample);
      } catch (error) {
        const failure = PluginError.from(error);
        this.#stop(entry.name);
        entry.failure = `${failure.code}: ${failure.message}`;
        this.#saveIndex();
        this.#log.write(
          "error",
          "plugin stopped and disabled",
          { plugin: entry.name, reason: entry.failure },
          "plugin",
        );
        stopped = true;
      }
      sample.offset += entry.metrics.length;
    }
    return stopped;
  }

  /** The sensor set changed: every plugin starts again against the new names (init runs again). */
  setSensorNames(names: readonly string[]): void {
    this.#sensorNames = names;
    for (const name of Array.from(this.#running.keys())) this.#stop(name);
    for (const entry of this.#index) if (entry.enabled && entry.failure === undefined) this.#start(entry);
    this.#changed();
  }

  statuses(): PluginStatus[] {
    const statuses = this.#index.map((entry) => this.#status(entry));
    // Packages refused before they were ever installed, under their names, the newest that fit the state's list.
    const refused = Array.from(this.#reasons).filter(([name]) => !this.#find(name));
    const room = REPORTED_STATUSES - statuses.length;
    for (const [name, reason] of refused.slice(Math.max(0, refused.length - room)))
      statuses.push({ name, version: "0", state: "failed", reason, calls: 0, errors: 0, fuel: 0 });
    return statuses;
  }

  /** A package from d/{id}/plugin: verified, loaded and started, then stored; or refused with the reason. */
  install(payload: string): PluginOutcome {
    const parsed = parsePluginPackage(payload);
    if (!parsed.ok) return this.#refuse(nameIn(payload), parsed.error.message);
    const pkg = parsed.value;
    const manifest = parsePluginManifest(pkg.manifest);
    if (!manifest.ok) return this.#refuse(nameIn(payload), manifest.error.message);
    const { name, version } = manifest.value;
    const existing = this.#find(name);
    const bytes = this.#verify(pkg.manifest, pkg.signature, pkg.wasm, manifest.value);
    if (typeof bytes === "string") return this.#refuse(name, bytes);
    if (existing === undefined && this.#index.length >= PLUGIN_LIMITS.perDevice)
      return this.#refuse(name, `at most ${PLUGIN_LIMITS.perDevice} plugins per device`);
    const config = pkg.config ?? existing?.config ?? {};
    const spec = { name, version, metrics: manifest.value.metrics, config };
    // It must start before it replaces anything: an upgrade that traps leaves the running version alone.
    const counters = existing ? this.#countersOf(name) : { calls: 0, errors: 0, fuel: 0 };
    let runtime: PluginRuntime;
    try {
      runtime = new PluginRuntime(spec, bytes, this.#sensorNames, counters, this.#log);
    } catch (error) {
      const failure = PluginError.from(error);
      const reason = existing
        ? `upgrade to ${version} failed, kept ${existing.version}: ${failure.code}: ${failure.message}`
        : `${failure.code}: ${failure.message}`;
      return this.#refuse(name, reason);
    }
    const slot = this.#freeSlot(existing);
    if (slot < 0) {
      runtime.close();
      return this.#refuse(name, "no free plugin storage slot");
    }
    try {
      this.#writeSlot(slot, bytes);
    } catch (error) {
      runtime.close();
      return this.#refuse(name, `storing the module failed: ${describeError(error)}`);
    }
    const stored: StoredVersion = {
      version,
      slot,
      sha256: manifest.value.sha256,
      size: bytes.byteLength,
      metrics: spec.metrics,
    };
    const enabled = pkg.enable ?? true;
    const entry: IndexEntry = { ...stored, name, config, enabled };
    if (existing) entry.previous = this.#versionOf(existing);
    this.#stop(name);
    this.#index = existing ? this.#index.map((item) => (item === existing ? entry : item)) : [...this.#index, entry];
    this.#reasons.delete(name);
    this.#counters.set(name, counters);
    this.#saveIndex();
    if (enabled) this.#running.set(name, runtime);
    else runtime.close();
    this.#log.write(
      "info",
      existing ? "plugin upgraded" : "plugin installed",
      { plugin: name, version, enabled },
      "plugin",
    );
    this.#changed();
    return { ok: true, status: this.#status(entry) };
  }

  /** Starts a plugin that is installed (after a failure too: the operator decided to try again). */
  enable(name: string): PluginOutcome {
    const entry = this.#find(name);
    if (!entry) return { ok: false, reason: `no plugin named ${name}` };
    this.#stop(name);
    entry.enabled = true;
    entry.failure = undefined;
    this.#saveIndex();
    this.#start(entry);
    this.#changed();
    const reason = this.#reasons.get(name);
    return reason === undefined ? { ok: true, status: this.#status(entry) } : { ok: false, reason };
  }

  disable(name: string): PluginOutcome {
    const entry = this.#find(name);
    if (!entry) return { ok: false, reason: `no plugin named ${name}` };
    this.#stop(name);
    entry.enabled = false;
    this.#saveIndex();
    this.#changed();
    return { ok: true, status: this.#status(entry) };
  }

  remove(name: string): PluginOutcome {
    const entry = this.#find(name);
    if (!entry) return { ok: false, reason: `no plugin named ${name}` };
    this.#stop(name);
    this.#index = this.#index.filter((item) => item !== entry);
    this.#reasons.delete(name);
    this.#counters.delete(name);
    this.#saveIndex();
    this.#log.write("info", "plugin removed", { plugin: name }, "plugin");
    this.#changed();
    return { ok: true, status: { ...this.#status(entry), state: "disabled" } };
  }

  /** New config numbers; the plugin starts again with them, or keeps the old ones if init refuses them. */
  configure(name: string, config: PluginConfig): PluginOutcome {
    const entry = this.#find(name);
    if (!entry) return { ok: false, reason: `no plugin named ${name}` };
    const previous = entry.config;
    entry.config = config;
    if (entry.enabled && entry.failure === undefined) {
      this.#stop(name);
      this.#start(entry);
      const reason = this.#reasons.get(name);
      if (reason !== undefined) {
        entry.config = previous;
        this.#start(entry);
        this.#changed();
        return { ok: false, reason: `config refused: ${reason}` };
      }
    }
    this.#saveIndex();
    this.#changed();
    return { ok: true, status: this.#status(entry) };
  }

  /** The module's bytes, if its signature, key, hash and size check out; else why not. */
  #verify(manifestText: string, signature: string, wasm: string, manifest: PluginManifest): ArrayBuffer | string {
    const key = this.#keys.get(manifest.keyId);
    if (!key) return `unknown signing key ${manifest.keyId}`;
    let bytes: ArrayBuffer;
    let signatureBytes: ArrayBuffer;
    try {
      signatureBytes = decodeBase64(signature);
      bytes = decodeBase64(wasm);
    } catch {
      return "signature or module is not valid base64";
    }
    if (signatureBytes.byteLength !== SIGNATURE_BYTES) return "signature must be 64 bytes";
    if (!verifyP256(key, sha256(ArrayBuffer.fromString(manifestText)), signatureBytes))
      return "signature does not verify: the manifest was not signed by this key";
    if (bytes.byteLength !== manifest.size)
      return `module is ${bytes.byteLength} bytes, the manifest says ${manifest.size}`;
    if (hex(sha256(bytes)) !== manifest.sha256) return "module does not match the manifest's sha256";
    return bytes;
  }

  #refuse(name: string | undefined, reason: string): PluginOutcome {
    this.#log.write("error", "plugin refused", { plugin: name ?? "", reason }, "plugin");
    if (name !== undefined) {
      // Newest last, and only as many as can be reported.
      this.#reasons.delete(name);
      this.#reasons.set(name, reason);
      for (const oldest of this.#reasons.keys()) {
        if (this.#reasons.size <= REPORTED_STATUSES) break;
        this.#reasons.delete(oldest);
      }
      this.#changed();
    }
    return { ok: false, reason };
  }

  #countersOf(name: string): PluginCounters {
    let counters = this.#counters.get(name);
    if (!counters) {
      counters = { calls: 0, errors: 0, fuel: 0 };
      this.#counters.set(name, counters);
    }
    return counters;
  }

  #start(entry: IndexEntry): void {
    this.#reasons.delete(entry.name);
    try {
      const bytes = this.#readSlot(entry);
      this.#running.set(
        entry.name,
        new PluginRuntime(entry, bytes, this.#sensorNames, this.#countersOf(entry.name), this.#log),
      );
    } catch (error) {
      const failure = PluginError.from(error, "refused");
      this.#reasons.set(entry.name, `${failure.code}: ${failure.message}`);
      this.#log.write("error", "plugin did not start", { plugin: entry.name, reason: failure.message }, "plugin");
    }
  }

  #stop(name: string): void {
    this.#running.get(name)?.close();
    this.#running.delete(name);
  }

  #changed(): void {
    this.#onChange();
  }

  #status(entry: IndexEntry): PluginStatus {
    const reason = entry.failure ?? this.#reasons.get(entry.name);
    const failed = entry.failure !== undefined || (entry.enabled && this.#reasons.has(entry.name));
    const status: PluginStatus = {
      name: entry.name,
      version: entry.version,
      state: this.#running.has(entry.name) ? "enabled" : failed ? "failed" : "disabled",
      ...this.#countersOf(entry.name),
    };
    if (reason !== undefined) status.reason = reason.slice(0, PLUGIN_LIMITS.statusReasonLength);
    if (entry.previous) status.previous = entry.previous.version;
    return status;
  }

  #find(name: string): IndexEntry | undefined {
    return this.#index.find((entry) => entry.name === name);
  }

  #versionOf(entry: IndexEntry): StoredVersion {
    return { version: entry.version, slot: entry.slot, sha256: entry.sha256, size: entry.size, metrics: entry.metrics };
  }

  /** A slot no current or kept version uses; an upgrade's own previous version is about to be let go. */
  #freeSlot(upgrading: IndexEntry | undefined): number {
    const used = new Set<number>();
    for (const entry of this.#index) {
      used.add(entry.slot);
      if (entry.previous && entry !== upgrading) used.add(entry.previous.slot);
    }
    for (let slot = 0; slot < this.#slots; slot++) if (!used.has(slot)) return slot;
    return -1;
  }

  #writeSlot(slot: number, bytes: ArrayBuffer): void {
    const blockSize = this.#flash.blockSize;
    const first = (slot * this.#slotBytes) / blockSize;
    for (let sector = 0; sector < Math.ceil(bytes.byteLength / blockSize); sector++) this.#flash.erase(first + sector);
    this.#flash.write(slot * this.#slotBytes, bytes.byteLength, bytes);
  }

  /** The stored bytes, checked against the hash recorded at install (flash can rot). */
  #readSlot(entry: StoredVersion): ArrayBuffer {
    // An ArrayBuffer unless read asks for a mapped HostBuffer, which it does not here.
    const bytes = this.#flash.read(entry.slot * this.#slotBytes, entry.size) as ArrayBuffer;
    if (hex(sha256(bytes)) !== entry.sha256)
      throw new PluginError("refused", "stored module does not match its sha256");
    return bytes;
  }

  #loadIndex(): IndexEntry[] {
    try {
      const text = Preference.get(PREFERENCE_DOMAIN, PREFERENCE_KEY);
      const saved: unknown = typeof text === "string" ? JSON.parse(text) : [];
      return Array.isArray(saved) ? (saved as IndexEntry[]) : [];
    } catch (error) {
      this.#log.write("error", "plugin index unreadable, no plugin runs", { error: describeError(error) }, "plugin");
      return [];
    }
  }

  #saveIndex(): void {
    Preference.set(PREFERENCE_DOMAIN, PREFERENCE_KEY, JSON.stringify(this.#index));
  }
}
