// Installs a plugin artifact for kestrel/artifact-update, as kestrel/firmware-installer installs a
// firmware image: the updater has verified the manifest (trusted key, signature, kind, size) and
// streams the chunks here; once their SHA-256 is the manifest's, complete() hands the module to
// kestrel/plugins, which loads and starts it before it stores anything. A module is at most one
// 16 KiB slot, so it is gathered in RAM, not written to flash piece by piece.

import { PLUGIN_LIMITS } from "@kestrel/wire";
import type { ArtifactManifest, PluginSettings } from "@kestrel/wire/artifacts";
import type Plugins from "kestrel/plugins";
import type { InstallOutcome } from "kestrel/plugins";

export default class PluginInstaller {
  readonly kind = "plugin";
  /** The largest module a storage slot holds. */
  readonly capacity: number = PLUGIN_LIMITS.moduleBytes;
  readonly #plugins: Plugins;
  #buffer: ArrayBuffer | undefined;
  #length = 0;

  constructor(plugins: Plugins) {
    this.#plugins = plugins;
  }

  /** The installed version of the plugin of this name, if there is one. */
  installedVersion(name: string): string | undefined {
    return this.#plugins.versionOf(name);
  }

  /** The installed version offered again: only its settings change; the reason when they are refused. */
  settle(name: string, settings: PluginSettings): string | undefined {
    const outcome = this.#plugins.settle(name, settings);
    return outcome.ok ? undefined : outcome.reason;
  }

  begin(): void {
    this.#buffer = new ArrayBuffer(this.capacity);
    this.#length = 0;
  }

  write(bytes: Uint8Array): void {
    const buffer = this.#buffer;
    if (!buffer) throw new Error("installer not started");
    if (this.#length + bytes.length > buffer.byteLength)
      throw new RangeError(`a plugin is at most ${buffer.byteLength} bytes`);
    new Uint8Array(buffer).set(bytes, this.#length);
    this.#length += bytes.length;
  }

  /** The whole module is in and hashes to the manifest's SHA-256: loaded, started and stored, or refused. */
  complete(manifest: ArtifactManifest, settings: PluginSettings): InstallOutcome {
    const buffer = this.#buffer;
    if (!buffer) throw new Error("installer not started");
    const bytes = buffer.slice(0, this.#length);
    this.cancel();
    const { name, version, sha256, metrics = [] } = manifest;
    return this.#plugins.install({ name, version, sha256, metrics }, bytes, settings);
  }

  cancel(): void {
    this.#buffer = undefined;
    this.#length = 0;
  }
}
