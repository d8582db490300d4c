// What the plugin tests share: the built example and faulty modules, a signing key the simulated
// devices trust, signed packages of them, and the plugin states a device reports.

import { generateKeyPairSync } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { type PluginConfig, type PluginPackage, type PluginStatus, topics } from "@kestrel/wire";
import { pluginPackage, trustedKeyEntry } from "../plugins/package.ts";
import type { TestBroker } from "./broker.ts";

export const PLUGIN_BUILD_DIR = join(import.meta.dirname, "..", "build", "plugins");

export function pluginBytes(name: string): Uint8Array<ArrayBuffer> {
  return new Uint8Array(readFileSync(join(PLUGIN_BUILD_DIR, `${name}.wasm`)));
}

/** The metrics each example declares in its manifest. */
export const EXAMPLE_METRICS: Readonly<Record<string, string[]>> = Object.freeze({
  smoothing: ["temperature_avg"],
  dewpoint: ["dew_point"],
  threshold: ["alarm"],
  "out-of-bounds": ["leak"],
  "init-trap": ["temperature_avg"],
  recursion: ["depth"],
});

export const KEY_ID = "test-key";
export const signingKey = generateKeyPairSync("ec", { namedCurve: "P-256" });
/** The device config that makes it trust signingKey. */
export const TRUSTED = { pluginKeys: trustedKeyEntry(KEY_ID, signingKey.publicKey) };

export function signedPackage(
  module: string,
  options: { name?: string; version?: string; config?: PluginConfig; bytes?: Uint8Array; enable?: boolean } = {},
): PluginPackage {
  const name = options.name ?? module.replaceAll("-", "");
  return pluginPackage(
    options.bytes ?? pluginBytes(module),
    {
      name,
      version: options.version ?? "1.0.0",
      metrics: EXAMPLE_METRICS[module] ?? [],
      keyId: KEY_ID,
      privateKey: signingKey.privateKey,
    },
    { config: options.config, enable: options.enable },
  );
}

/**
 * Resolves with the plugin's status from the first state the device published, from the broker's
 * publish number `since` on, in which it matches.
 */
export async function pluginState(
  broker: TestBroker,
  deviceId: string,
  name: string,
  match: (status: PluginStatus) => boolean,
  since = 0,
  timeoutMs = 15_000,
): Promise<PluginStatus> {
  const state = await broker.waitFor((message) => {
    if (message.topic !== topics.state(deviceId) || broker.published.indexOf(message) < since) return false;
    const plugins = (JSON.parse(message.payload) as { plugins?: PluginStatus[] }).plugins;
    const status = plugins?.find((plugin) => plugin.name === name);
    return status !== undefined && match(status);
  }, timeoutMs);
  const plugins = (JSON.parse(state.payload) as { plugins: PluginStatus[] }).plugins;
  return plugins.find((plugin) => plugin.name === name) as PluginStatus;
}

export async function deliver(broker: TestBroker, deviceId: string, pkg: PluginPackage | string): Promise<void> {
  await broker.publish(topics.plugin(deviceId), typeof pkg === "string" ? pkg : JSON.stringify(pkg));
}
