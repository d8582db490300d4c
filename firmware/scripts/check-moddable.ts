// Type-checks the firmware against the real Moddable SDK the way an ESP32 build does: mcconfig
// resolves manifest.json for esp32 (without -m it needs no ESP-IDF) and writes one tsconfig per
// TypeScript module, mapped to the SDK's own typings; tsc then checks each. Needs MODDABLE set to a
// built SDK (mcconfig on PATH or in $MODDABLE/build/bin/lin/release).
//   npm run check:moddable -w firmware

import { spawnSync } from "node:child_process";
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const firmwareDir = fileURLToPath(new URL("..", import.meta.url));

function run(command: string, args: string[]): number {
  const result = spawnSync(command, args, { stdio: "inherit", cwd: firmwareDir });
  if (result.error) throw result.error;
  return result.status ?? 1;
}

function filesNamed(dir: string, suffix: string): string[] {
  return readdirSync(dir, { recursive: true, encoding: "utf8" })
    .filter((file) => file.endsWith(suffix))
    .map((file) => join(dir, file));
}

const moddable = process.env.MODDABLE;
if (!moddable) {
  process.stderr.write("MODDABLE is not set: point it at a Moddable SDK checkout whose tools are built\n");
  process.exit(2);
}
const mcconfig = spawnSync("mcconfig", ["-h"]).error ? join(moddable, "build/bin/lin/release/mcconfig") : "mcconfig";
const out = mkdtempSync(join(tmpdir(), "kestrel-mcconfig-"));
try {
  if (run(mcconfig, ["-p", "esp32", "-o", out, "manifest.json"]) !== 0) process.exit(1);
  const configs = filesNamed(out, "-tsconfig.json");
  if (configs.length === 0) throw new Error("mcconfig wrote no per-module tsconfig");
  let failed = 0;
  for (const config of configs) {
    process.stdout.write(`tsc ${config.slice(out.length + 1)}\n`);
    if (run(join(firmwareDir, "../node_modules/.bin/tsc"), ["-p", config, "--noEmit"]) !== 0) failed++;
  }
  process.stdout.write(`${configs.length - failed} of ${configs.length} modules type-check against the SDK\n`);
  process.exitCode = failed === 0 ? 0 : 1;
} finally {
  rmSync(out, { recursive: true, force: true });
}
