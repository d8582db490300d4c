// The Moddable SDK as the device checks use it: where its tools are, how mcconfig resolves our
// manifest for a board, and the makefile rules mcconfig writes (tsc, xsc, xsid, xsl, mcrez), run
// without the ESP-IDF. Nothing here builds the SDK: its tools must already be built
// (`make` in $MODDABLE/build/makefiles/lin, see firmware/README.md).

import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { delimiter, join } from "node:path";
import { fileURLToPath } from "node:url";

export const FIRMWARE_DIR = fileURLToPath(new URL("../..", import.meta.url));
export const REPOSITORY_DIR = join(FIRMWARE_DIR, "..");

/** The boards a device build is checked for. */
export const BOARDS = ["esp32", "esp32/moddable_two", "esp32/esp32s3", "esp32/esp32c3"] as const;

export interface Sdk {
  root: string;
  bin: string;
  /** The environment every SDK tool runs in: MODDABLE set, the SDK's tools and our tsc first on PATH. */
  env: NodeJS.ProcessEnv;
}

export function openSdk(): Sdk {
  const root = process.env.MODDABLE;
  if (!root) throw new Error("MODDABLE is not set: point it at a Moddable SDK checkout whose tools are built");
  const bin = join(root, "build/bin/lin/release");
  for (const tool of ["mcconfig", "xsc", "xsl", "xsid", "mcrez"])
    if (!existsSync(join(bin, tool)))
      throw new Error(`${join(bin, tool)} is missing: build the SDK's tools (make in $MODDABLE/build/makefiles/lin)`);
  const path = [bin, join(REPOSITORY_DIR, "node_modules/.bin"), process.env.PATH ?? ""].join(delimiter);
  return { root, bin, env: { ...process.env, MODDABLE: root, PATH: path } };
}

export interface Run {
  status: number;
  output: string;
}

export function run(sdk: Sdk, command: string, args: string[], cwd: string): Run {
  const result = spawnSync(command, args, { cwd, env: sdk.env, encoding: "utf8", maxBuffer: 64 * 1024 * 1024 });
  if (result.error) throw result.error;
  return { status: result.status ?? 1, output: `${result.stdout}${result.stderr}` };
}

/** One board's build directory as mcconfig wrote it (no -m: the makefile is written, nothing is built). */
export interface BoardBuild {
  board: string;
  tmpDir: string;
  makefile: string;
}

export function configure(sdk: Sdk, manifest: string, board: string, outDir: string): BoardBuild {
  mkdirSync(outDir, { recursive: true });
  const result = run(sdk, "mcconfig", ["-p", board, "-o", outDir, manifest], outDir);
  if (result.status !== 0) throw new Error(`mcconfig -p ${board} failed:\n${result.output}`);
  const name = manifest.split("/").at(-2) ?? "";
  // mcconfig writes tmp/<platform>/<subplatform>/release/<name> (tmp/esp32/release/<name> without one).
  const tmpDir = join(outDir, "tmp", ...board.split("/"), "release", name);
  const makefile = join(tmpDir, "makefile");
  if (!existsSync(makefile)) throw new Error(`mcconfig wrote no makefile at ${makefile}`);
  return { board, tmpDir, makefile };
}

/**
 * Runs the makefile's rules up to the linked XS image and the resources, the JS half of a device
 * build. The ESP-IDF is needed only for the C half: its version and sdkconfig.h are given here
 * so that make never looks for it.
 */
export function linkImage(sdk: Sdk, build: BoardBuild): Run {
  const stub = join(build.tmpDir, "no-idf");
  mkdirSync(stub, { recursive: true });
  writeFileSync(join(stub, "sdkconfig.h"), "");
  return run(
    sdk,
    "make",
    [
      "-f",
      build.makefile,
      `IDF_PATH=${stub}`,
      "IDF_VERSION=v6.0",
      `SDKCONFIG_H=${join(stub, "sdkconfig.h")}`,
      join(build.tmpDir, "mc.xs.c"),
      join(build.tmpDir, "mc.resources.c"),
    ],
    build.tmpDir,
  );
}

/** A compiled module of the image: its specifier and the JavaScript xsc compiled. */
export interface ImageModule {
  specifier: string;
  source: string;
}

/** Modules the makefile compiles (xsc rules) and the ones it preloads, by specifier. */
export function imageModules(build: BoardBuild): { modules: ImageModule[]; preloads: Set<string> } {
  const text = readFileSync(build.makefile, "utf8").replaceAll("$(TMP_DIR)", build.tmpDir);
  const specifier = (path: string) => path.replace(/^~\.embedded\//, "embedded:");
  const modules: ImageModule[] = [];
  for (const match of text.matchAll(/^\$\(MODULES_DIR\)\/(.+)\.xsb: (\S+)$/gm)) {
    const [, name, source] = match;
    if (name && source) modules.push({ specifier: specifier(name), source });
  }
  const preloads = new Set<string>();
  for (const match of text.matchAll(/^\t-p (.+)\.xsb\\?$/gm)) if (match[1]) preloads.add(specifier(match[1]));
  return { modules, preloads };
}
