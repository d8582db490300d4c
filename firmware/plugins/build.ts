// Builds the plugins from their AssemblyScript sources with the pinned `assemblyscript` compiler:
// the three examples (assembly/examples), the faulty ones the tests need (assembly/faulty) and the
// benchmark kernels (assembly/bench), into
// build/plugins/<name>.wasm. Part of `npm run build -w firmware`.

import { mkdirSync, readdirSync, statSync } from "node:fs";
import { basename, join } from "node:path";

const PLUGINS_DIR = import.meta.dirname;
export const PLUGIN_BUILD_DIR = join(PLUGINS_DIR, "..", "build", "plugins");

/** Release builds; the SDK's abort logs and traps, so no import outside the host API ("kestrel"). */
const COMPILER_OPTIONS = [
  "-O3",
  "--shrinkLevel",
  "2",
  "--noAssert",
  "--use",
  "abort=plugins/assembly/sdk/kestrel/pluginAbort",
];

const SDK = join(PLUGINS_DIR, "assembly", "sdk", "kestrel.ts");

function modified(file: string): number {
  try {
    return statSync(file).mtimeMs;
  } catch {
    return 0;
  }
}

/** Compiles when the output is older than its source, the SDK or this script (a compile takes seconds). */
async function compile(source: string, output: string): Promise<void> {
  const inputs = Math.max(modified(join(PLUGINS_DIR, "..", source)), modified(SDK), modified(import.meta.filename));
  if (modified(output) > inputs) return;
  // Loaded only when something needs compiling: the compiler (binaryen) takes seconds to load.
  const { default: asc } = await import("assemblyscript/asc");
  const result = await asc.main([source, ...COMPILER_OPTIONS, "-o", output], {});
  if (result.error) throw new Error(`${source}: ${result.stderr.toString()}`);
}

const folders = ["examples", "faulty", "bench"];
mkdirSync(PLUGIN_BUILD_DIR, { recursive: true });
for (const folder of folders) {
  const dir = join("plugins", "assembly", folder);
  for (const file of readdirSync(join(PLUGINS_DIR, "assembly", folder)).filter((name) => name.endsWith(".ts")))
    await compile(join(dir, file), join(PLUGIN_BUILD_DIR, `${basename(file, ".ts")}.wasm`));
}
