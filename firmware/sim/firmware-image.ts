// The compiled firmware as the simulator loads it: the module map and config defaults read from
// manifest.json (top-level entries plus the "kestrel-sim" platform section), resolved to tsc output.

import { existsSync, readFileSync } from "node:fs";
import { basename, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";

/**
 * The manifest platform the simulator answers to. mcconfig never selects it (no SDK platform has
 * that name), so its module overrides apply to the simulator only.
 */
export const SIM_PLATFORM = "kestrel-sim";

export interface FirmwareModule {
  /** Compiled JavaScript file. */
  file: string;
  /** A simulated platform module, allowed to reach the simulator host. */
  host: boolean;
}

export interface FirmwareImage {
  manifestPath: string;
  modules: ReadonlyMap<string, FirmwareModule>;
  /** Manifest `config`, the simulator's platform section applied. */
  config: Readonly<Record<string, unknown>>;
  /** The simulator runtime module the worker boots first. */
  runtimeFile: string;
}

interface ManifestSection {
  modules?: Record<string, string | string[]>;
  config?: Record<string, unknown>;
}

interface Manifest extends ManifestSection {
  platforms?: Record<string, ManifestSection>;
}

export const FIRMWARE_DIR = fileURLToPath(new URL("..", import.meta.url));

/** tsc compiles with rootDir at the repository root (the firmware imports ../wire), into build/. */
function compiledPath(buildDir: string, sourceRoot: string, source: string): string {
  return `${join(buildDir, relative(sourceRoot, source))}.js`;
}

function addModules(
  modules: Map<string, FirmwareModule>,
  section: ManifestSection,
  paths: { firmwareDir: string; buildDir: string; sourceRoot: string },
  host: boolean,
): void {
  for (const [specifier, value] of Object.entries(section.modules ?? {})) {
    for (const entry of Array.isArray(value) ? value : [value]) {
      if (entry.startsWith("$(")) continue; // SDK modules: never part of the simulated image
      if (entry.includes("*"))
        throw new Error(`manifest: wildcard module path "${entry}" is not supported by the simulator`);
      const name = specifier === "*" ? basename(entry) : specifier;
      const file = compiledPath(paths.buildDir, paths.sourceRoot, resolve(paths.firmwareDir, entry));
      modules.set(name, { file, host });
    }
  }
}

export function loadFirmwareImage(options: { firmwareDir?: string; buildDir?: string } = {}): FirmwareImage {
  const firmwareDir = options.firmwareDir ?? FIRMWARE_DIR;
  const buildDir = options.buildDir ?? join(firmwareDir, "build");
  const sourceRoot = resolve(firmwareDir, "..");
  const manifestPath = join(firmwareDir, "manifest.json");
  const manifest = JSON.parse(readFileSync(manifestPath, "utf8")) as Manifest;
  const platform = manifest.platforms?.[SIM_PLATFORM] ?? {};
  const paths = { firmwareDir, buildDir, sourceRoot };
  const modules = new Map<string, FirmwareModule>();
  addModules(modules, manifest, paths, false);
  // The platform section supplies what the SDK provides on a device: timer, mqtt, preference, IO.
  addModules(modules, platform, paths, true);
  const runtimeFile = compiledPath(buildDir, sourceRoot, join(firmwareDir, "sim", "xs", "boot"));
  for (const file of [runtimeFile, ...Array.from(modules.values(), (module) => module.file)])
    if (!existsSync(file)) throw new Error(`firmware not built: ${file} is missing (run npm run build -w firmware)`);
  return {
    manifestPath,
    modules,
    config: { ...manifest.config, ...platform.config },
    runtimeFile,
  };
}
