// kestrel/plugins: the plugins installed on this device and their lifecycle. A plugin arrives as a
// signed artifact (kestrel/artifact-update verifies the manifest against the organization's keys and
// the bytes against its SHA-256, kestrel/plugin-installer hands them here); it must load and pass
// init() before it is stored; an upgrade that fails to start leaves the version before it running
// (rollback). Enabled plugins run on every sample; one that traps or runs out of budget is disabled
// with its reason.
// The modules live in the "kplugins" flash partition (one 16 KiB slot each, the current and the
// previous version of every plugin), their index in preference, so all of it survives reboots.

import { PLUGIN_LIMITS, type PluginConfig, type PluginStatus, pluginMetricName } from "@kestrel/wire";
import { type ArtifactFailure, bytesToHex, type PluginSettings } from "@kestrel/wire/artifacts";
import Flash from "flash";
import { sha256 } from "kestrel/artifact-signature";
import type Log from "kestrel/log";
import { describeError } from "kestrel/log";
import PluginRuntime, { type PluginCounters, PluginError, type PluginSample } from "kestrel/plugin-host";
import Preference from "preference";

const PREFERENCE_DOMAIN = "kplugins";
/** What DeviceState.plugins may hold (the wire's limit): installed plugins first, then the latest refusals. */
const REPORTED_STATUSES = PLUGIN_LIMITS.perDevice * 2;
const PREFERENCE_KEY = "index";

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

/** What a verified plugin artifact's manifest says about the module. */
export interface PluginModule {
  name: string;
  version: string;
  sha256: string;
  metrics: string[];
}

/**
 * An install's outcome in the artifact pipeline's terms: installed, or refused with a failure code;
 * `kept` names the version still running when an upgrade was refused (a rollback).
 */
export type InstallOutcome = { ok: true; status: PluginStatus } | InstallRefusal;

export interface InstallRefusal {
  ok: false;
  code: ArtifactFailure;
  reason: string;
  kept?: string;
}

export interface PluginsOptions {
  /** The flash data partition holding the modules. */
  partition: string;
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

  /** The installed version of a plugin, if it is installed. */
  versionOf(name: string): string | undefined {
    return this.#find(name)?.version;
  }

  /**
   * A verified module (its bytes match the signed manifest): loaded and started, then stored; or
   * refused with the reason. Once installed it runs with `settings` (config, enabled or not).
   */
  install(module: PluginModule, bytes: ArrayBuffer, settings: PluginSettings): InstallOutcome {
    const { name, version } = module;
    const existing = this.#find(name);
    if (existing === undefined && this.#index.length >= PLUGIN_LIMITS.perDevice)
      return this.#refuse(name, "no_room", `at most ${PLUGIN_LIMITS.perDevice} plugins per device`);
    const { config, enabled } = settings;
    const spec = { name, version, metrics: module.metrics, config };
    // It must start before it replaces anything: an upgrade that traps leaves the running version alone.
    const counters = existing ? this.#countersOf(name) : { calls: 0, errors: 0, fuel: 0 };
    let runtime: PluginRuntime;
    try {
      runtime = new PluginRuntime(spec, bytes, this.#sensorNames, counters, this.#log);
    } catch (error) {
      const failure = PluginError.from(error);
      const code: ArtifactFailure = failure.code === "refused" ? "invalid_module" : "start_failed";
      const why = `${failure.code}: ${failure.message}`;
      if (!existing) return this.#refuse(name, code, why);
      const refusal = this.#refuse(name, code, `upgrade to ${version} failed, kept ${existing.version}: ${why}`);
      return { ...refusal, kept: existing.version };
    }
    const slot = this.#freeSlot(existing);
    if (slot < 0) {
      runtime.close();
      return this.#refuse(name, "no_room", "no free plugin storage slot");
    }
    try {
      this.#writeSlot(slot, bytes);
    } catch (error) {
      runtime.close();
      return this.#refuse(name, "flash_error", `storing the module failed: ${describeError(error)}`);
    }
    const stored: StoredVersion = {
      version,
      slot,
      sha256: module.sha256,
      size: bytes.byteLength,
      metrics: spec.metrics,
    };
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

  /** The installed version offered again: its config and enabled state become the offer's. */
  settle(name: string, settings: PluginSettings): PluginOutcome {
    const configured = this.configure(name, settings.config);
    if (!configured.ok) return configured;
    const entry = this.#find(name) as IndexEntry;
    if (settings.enabled === (entry.enabled && entry.failure === undefined)) return configured;
    return settings.enabled ? this.enable(name) : this.disable(name);
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

  #refuse(name: string, code: ArtifactFailure, reason: string): InstallRefusal {
    this.#log.write("error", "plugin refused", { plugin: name, code, reason }, "plugin");
    // Newest last, and only as many as can be reported.
    this.#reasons.delete(name);
    this.#reasons.set(name, reason);
    for (const oldest of this.#reasons.keys()) {
      if (this.#reasons.size <= REPORTED_STATUSES) break;
      this.#reasons.delete(oldest);
    }
    this.#changed();
    return { ok: false, code, reason };
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
    if (bytesToHex(new Uint8Array(sha256(bytes))) !== entry.sha256)
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
