// What a device build would catch before the C compiler, against the real Moddable SDK, for every
// board we ship: mcconfig resolves manifest.json, tsc checks and emits each module against the SDK's
// own typings, xsc compiles, xsl links and runs the preloaded modules (with a probe that makes it
// resolve the imports of the modules that are not preloaded, `main` among them), mcrez packs the
// resources. Fails on a type error, an import xsl cannot resolve, an xsl warning for one of our
// modules (state a preloaded module would keep in RAM copies), or a module compiled into the image
// that nothing imports. A fixture with an import the SDK refuses must fail to link on every board.
// Then the SDK's own TLS + MQTT client, built for the SDK's Linux simulator (mcsim, under Xvfb),
// connects to the real gateway with a token and with a client certificate (--no-interop skips it).
// Needs MODDABLE set to an SDK checkout whose tools are built (firmware/README.md).
//   MODDABLE=<sdk> npm run check:moddable -w firmware [-- --board esp32/esp32s3] [--no-interop]

import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { runInterop } from "./moddable/interop.ts";
import {
  notPreloadedImports,
  ourDeviceModules,
  PROBE_SPECIFIER,
  type ProbeImport,
  probeImports,
  probeSource,
  readManifest,
} from "./moddable/link-probe.ts";
import {
  BOARDS,
  type BoardBuild,
  configure,
  FIRMWARE_DIR,
  imageModules,
  linkImage,
  openSdk,
  type Sdk,
} from "./moddable/sdk.ts";
import { importedSpecifiers, parseModule } from "./moddable/xs-source.ts";

const FIXTURE = join(FIRMWARE_DIR, "scripts/moddable/fixtures/system-default-import.js");
/** What XS says when an import names an export the module does not have. */
const LINK_ERROR = /^### (\w*Error: .*?)!?$/m;
const WARNING = /^### warning: (\S+): (.*)$/gm;

interface BoardResult {
  board: string;
  problems: string[];
  summary: string[];
}

function writeProbe(dir: string, imports: readonly ProbeImport[]): void {
  writeFileSync(join(dir, `${PROBE_SPECIFIER}.js`), probeSource(imports));
}

/** The wrapper manifest: ours, plus the probe as a preloaded module. */
function writeWrapper(dir: string): string {
  const manifest = join(dir, "manifest.json");
  const wrapper = {
    include: [join(FIRMWARE_DIR, "manifest.json")],
    modules: { [PROBE_SPECIFIER]: `./${PROBE_SPECIFIER}` },
    preload: [PROBE_SPECIFIER],
  };
  writeFileSync(manifest, JSON.stringify(wrapper, null, 2));
  return manifest;
}

/** Which probe imports xsl refuses, one link each: xsl's message does not name the import. */
function refusedImports(sdk: Sdk, build: BoardBuild, dir: string, imports: readonly ProbeImport[]): string[] {
  const refused: string[] = [];
  for (const probe of imports) {
    writeProbe(dir, [probe]);
    const link = linkImage(sdk, build);
    const error = LINK_ERROR.exec(link.output);
    if (link.status !== 0) refused.push(`${probe.importer}: ${probe.line} → ${error?.[1] ?? "link failed"}`);
  }
  return refused;
}

/** Modules compiled into the image that neither run at build time (preloaded) nor are imported from main or them. */
function unreferencedModules(build: BoardBuild): string[] {
  const { modules, preloads } = imageModules(build);
  const sources = new Map(modules.map((module) => [module.specifier, module.source]));
  const reached = new Set<string>();
  const pending = ["main", ...preloads];
  while (pending.length > 0) {
    const specifier = pending.pop() as string;
    if (reached.has(specifier)) continue;
    reached.add(specifier);
    const source = sources.get(specifier);
    if (source?.endsWith(".js")) pending.push(...importedSpecifiers(parseModule(source)));
  }
  return modules.map((module) => module.specifier).filter((specifier) => !reached.has(specifier));
}

function checkBoard(sdk: Sdk, board: string, root: string): BoardResult {
  const result: BoardResult = { board, problems: [], summary: [] };
  const dir = join(root, board.replaceAll("/", "-"), "kestrel");
  const manifest = readManifest();
  const ours = new Set([...ourDeviceModules(manifest).keys(), PROBE_SPECIFIER]);
  const imports = notPreloadedImports(manifest);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  writeProbe(dir, imports);
  const build = configure(sdk, writeWrapper(dir), board, join(root, board.replaceAll("/", "-"), "out"));
  const { modules, preloads } = imageModules(build);
  const link = linkImage(sdk, build);
  const typeErrors = link.output.split("\n").filter((line) => /error TS\d+/.test(line));
  if (typeErrors.length > 0) result.problems.push(...typeErrors);
  if (link.status !== 0 && typeErrors.length === 0) {
    const refused = refusedImports(sdk, build, dir, imports);
    result.problems.push(...(refused.length > 0 ? refused : [`link failed:\n${link.output.slice(-4000)}`]));
  }
  if (link.status !== 0) return result;
  const tsModules = modules.filter((module) => module.source.includes("/tsc/")).length;
  result.summary.push(`tsc: ${tsModules} TypeScript modules type-check against the SDK's typings and compile`);
  const warnings = Array.from(link.output.matchAll(WARNING), ([, module, text]) => ({ module, text }));
  const ourWarnings = warnings.filter(({ module }) => module !== undefined && ours.has(module));
  for (const { module, text } of ourWarnings) result.problems.push(`xsl warning in ${module}: ${text}`);
  result.summary.push(
    `xsl: ${modules.length} modules linked (${preloads.size} preloaded), ${imports.length} imports of modules that are not preloaded resolved; ` +
      `${ourWarnings.length} warnings for our modules, ${warnings.length - ourWarnings.length} for the SDK's`,
  );
  const unreferenced = unreferencedModules(build);
  for (const specifier of unreferenced)
    result.problems.push(`compiled into the image but nothing imports it: ${specifier}`);
  if (unreferenced.length === 0) result.summary.push("image: every module is preloaded or imported");
  writeProbe(dir, probeImports("fixture", FIXTURE));
  const fixture = linkImage(sdk, build);
  const refusal = LINK_ERROR.exec(fixture.output)?.[1];
  if (fixture.status === 0 || !refusal)
    result.problems.push('the link check accepted the fixture `import System from "system"`');
  else result.summary.push(`fixture \`import System from "system"\` refused by xsl: ${refusal}`);
  return result;
}

const { values } = parseArgs({
  options: { board: { type: "string", multiple: true }, "no-interop": { type: "boolean", default: false } },
});
const boards = values.board ?? [...BOARDS];
const sdk = openSdk();
const root = mkdtempSync(join(tmpdir(), "kestrel-moddable-"));
let failed = 0;
try {
  for (const board of boards) {
    process.stdout.write(`== ${board}\n`);
    const result = checkBoard(sdk, board, root);
    for (const line of result.summary) process.stdout.write(`  ${line}\n`);
    for (const line of result.problems) process.stdout.write(`  FAIL ${line}\n`);
    if (result.problems.length > 0) failed++;
  }
  process.stdout.write(`${boards.length - failed} of ${boards.length} boards pass the device check\n`);
  if (!values["no-interop"]) {
    process.stdout.write("== interop: the SDK's TLS + MQTT client (mcsim, lin) against the gateway and cloud\n");
    const interop = await runInterop(sdk, join(root, "interop"));
    for (const line of interop.trace) process.stdout.write(`  ${line}\n`);
    for (const line of interop.problems) process.stdout.write(`  FAIL ${line}\n`);
    if (!interop.ok) failed++;
    else process.stdout.write("  interop passes: token and client certificate\n");
  }
  process.exitCode = failed === 0 ? 0 : 1;
} finally {
  rmSync(root, { recursive: true, force: true });
}
