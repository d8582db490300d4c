// Regenerates platform-contract.json from the Moddable SDK: for every module the simulator's
// manifest section (kestrel-sim) stands in for, mcconfig resolves the specifier for esp32 and the
// facts of the SDK's module source are recorded (exports, globals, their kinds and members). CI does
// not have the SDK; test/platform-contract.test.ts holds the simulator to these committed facts.
//   MODDABLE=<sdk> npm run contract:moddable -w firmware

import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { CONTRACT_COMMAND, CONTRACT_PATH, type PlatformContract } from "./moddable/contract.ts";
import { ourDeviceModules, readManifest } from "./moddable/link-probe.ts";
import { type ModuleFacts, moduleFacts } from "./moddable/module-facts.ts";
import { configure, FIRMWARE_DIR, imageModules, openSdk } from "./moddable/sdk.ts";
import { parseModule } from "./moddable/xs-source.ts";

const PLATFORM = "esp32";
const sdk = openSdk();
const manifest = readManifest();
const ours = ourDeviceModules(manifest);
const simulated = Object.keys(manifest.platforms?.["kestrel-sim"]?.modules ?? {}).filter(
  (specifier) => !ours.has(specifier),
);
const out = mkdtempSync(join(tmpdir(), "kestrel-contract-"));
try {
  const build = configure(sdk, join(FIRMWARE_DIR, "manifest.json"), PLATFORM, out);
  const sources = new Map(imageModules(build).modules.map((module) => [module.specifier, module.source]));
  const facts = new Map<string, ModuleFacts>();
  const factsOf = (specifier: string): ModuleFacts | undefined => {
    const source = sources.get(specifier);
    if (!source?.endsWith(".js")) return undefined;
    let known = facts.get(specifier);
    if (!known) {
      known = moduleFacts(parseModule(source), factsOf);
      facts.set(specifier, known);
    }
    return known;
  };
  const described = spawnSync("git", ["-C", sdk.root, "describe", "--tags", "--always"], { encoding: "utf8" });
  const contract: PlatformContract = {
    command: CONTRACT_COMMAND,
    sdk: described.status === 0 ? described.stdout.trim() : "unknown",
    platform: PLATFORM,
    modules: {},
  };
  const missing: string[] = [];
  for (const specifier of simulated.sort()) {
    const source = sources.get(specifier);
    const moduleFactsOf = factsOf(specifier);
    if (!source || !moduleFactsOf) {
      missing.push(specifier);
      continue;
    }
    contract.modules[specifier] = { source: relative(sdk.root, source), ...moduleFactsOf };
  }
  if (missing.length > 0)
    throw new Error(
      `the ${PLATFORM} image has no JavaScript module for: ${missing.join(", ")} (is it in the esp32 section?)`,
    );
  writeFileSync(CONTRACT_PATH, `${JSON.stringify(contract, null, 2)}\n`);
  process.stdout.write(`${CONTRACT_PATH}: ${Object.keys(contract.modules).length} modules from ${contract.sdk}\n`);
} finally {
  rmSync(out, { recursive: true, force: true });
}
