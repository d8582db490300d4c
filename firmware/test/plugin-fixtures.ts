// What the plugin tests share: the built example and faulty modules, an organization key the
// simulated devices trust, plugin artifacts offered through the artifact pipeline (a signed
// manifest, the module served in chunks by the test peer), and the plugin states a device reports.

import { readFileSync } from "node:fs";
import { join } from "node:path";
import { type PluginConfig, type PluginStatus, topics } from "@kestrel/wire";
import type { ArtifactManifest, ArtifactOffer } from "@kestrel/wire/artifacts";
import { type ArtifactPeer, offer, SigningKey, sha256Hex } from "./artifact-peer.ts";
import type { TestBroker } from "./broker.ts";

export const PLUGIN_BUILD_DIR = join(import.meta.dirname, "..", "build", "plugins");

export function pluginBytes(name: string): Buffer<ArrayBuffer> {
  return Buffer.from(readFileSync(join(PLUGIN_BUILD_DIR, `${name}.wasm`)));
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

export const signingKey = new SigningKey();
/** The device config that makes it trust signingKey. */
export const TRUSTED = { otaKeys: signingKey.provisioned };

/** A plugin offer and the bytes the peer serves for it. */
export interface PluginDelivery {
  offer: ArtifactOffer;
  bytes: Buffer;
  /** The SHA-256 the peer serves the bytes under: the manifest's, unless a test lies. */
  servedAs?: string;
}

let campaigns = 0;

export function pluginOffer(
  module: string,
  options: {
    name?: string;
    version?: string;
    config?: PluginConfig;
    enabled?: boolean;
    bytes?: Buffer;
    key?: SigningKey;
    manifest?: Partial<ArtifactManifest>;
    extra?: Partial<ArtifactOffer>;
  } = {},
): PluginDelivery {
  const bytes = options.bytes ?? pluginBytes(module);
  const key = options.key ?? signingKey;
  const manifest = key.manifest(bytes, {
    kind: "plugin",
    name: options.name ?? module.replaceAll("-", ""),
    version: options.version ?? "1.0.0",
    target: { chip: "*", board: "*" },
    metrics: EXAMPLE_METRICS[module] ?? [],
    ...options.manifest,
  });
  const plugin = { config: options.config ?? {}, enabled: options.enabled ?? true };
  return { offer: offer(`cmp-plugin-${++campaigns}`, manifest, { plugin, ...options.extra }), bytes };
}

export async function deliver(peer: ArtifactPeer, deviceId: string, delivery: PluginDelivery): Promise<void> {
  peer.serve(delivery.bytes, delivery.servedAs ?? sha256Hex(delivery.bytes));
  await peer.publishOffer(deviceId, delivery.offer);
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
