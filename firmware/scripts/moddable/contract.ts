// The platform contract: for every SDK module the simulator stands in for, the facts of the SDK's
// own module (generated from the SDK by scripts/platform-contract.ts and committed as
// platform-contract.json), and the rules the simulator's module is held to: the same exports and
// globals with the same kinds, no member the SDK lacks, every member the firmware uses present.

import { readFileSync } from "node:fs";
import { join } from "node:path";
import ts from "typescript";
import { type MemberKind, type ModuleFacts, moduleFacts, type Shape } from "./module-facts.ts";
import { FIRMWARE_DIR } from "./sdk.ts";

export const CONTRACT_PATH = join(FIRMWARE_DIR, "platform-contract.json");
export const CONTRACT_COMMAND = "MODDABLE=<sdk> npm run contract:moddable -w firmware";

export interface PlatformContract {
  /** How to regenerate it. */
  command: string;
  sdk: string;
  /** The platform whose module sources were read (mcconfig resolves specifiers per platform). */
  platform: string;
  modules: Record<string, ModuleFacts & { source: string }>;
}

export function readContract(): PlatformContract {
  return JSON.parse(readFileSync(CONTRACT_PATH, "utf8")) as PlatformContract;
}

/** The facts of a TypeScript module as tsc emits it (the simulator's modules, our own device modules). */
export function typeScriptModuleFacts(path: string, source = readFileSync(path, "utf8")): ModuleFacts {
  const emitted = ts.transpileModule(source, {
    compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022, verbatimModuleSyntax: true },
  }).outputText;
  return moduleFacts(ts.createSourceFile(path, emitted, ts.ScriptTarget.Latest, true, ts.ScriptKind.JS));
}

/** Members the firmware reaches on a module's export or global: statically, on instances, or sets as callbacks. */
export interface Uses {
  static: Set<string>;
  instance: Set<string>;
  callbacks: Set<string>;
}

function memberSet(shape: Shape): Map<string, MemberKind | "instance" | "callback"> {
  const members = new Map<string, MemberKind | "instance" | "callback">();
  for (const name of shape.callbacks ?? []) members.set(name, "callback");
  for (const name of shape.instance ?? []) members.set(name, "instance");
  for (const [name, kind] of Object.entries(shape.prototype ?? {})) members.set(name, kind);
  return members;
}

/** A getter or a setter may stand in for the SDK's accessor (the simulator offers less, never more). */
function compatible(sim: MemberKind, sdk: MemberKind): boolean {
  return sim === sdk || (sdk === "accessor" && (sim === "getter" || sim === "setter"));
}

function compareShape(where: string, sim: Shape, sdk: Shape, uses: Uses | undefined, problems: string[]): void {
  if (sim.kind !== sdk.kind) {
    problems.push(`${where}: the simulator's is a ${sim.kind}, the SDK's a ${sdk.kind}`);
    return;
  }
  for (const [name, kind] of Object.entries(sim.static ?? {})) {
    const theirs = sdk.static?.[name];
    if (theirs === undefined) problems.push(`${where}.${name}: the simulator has it, the SDK does not`);
    else if (!compatible(kind, theirs))
      problems.push(`${where}.${name}: the simulator's is a ${kind}, the SDK's a ${theirs}`);
  }
  for (const [name, kind] of Object.entries(sim.prototype ?? {})) {
    const theirs = sdk.prototype?.[name];
    if (theirs === undefined) problems.push(`${where}.prototype.${name}: the simulator has it, the SDK does not`);
    else if (!compatible(kind, theirs))
      problems.push(`${where}.prototype.${name}: the simulator's is a ${kind}, the SDK's a ${theirs}`);
  }
  for (const name of sim.callbacks ?? [])
    if (!sdk.callbacks?.includes(name)) problems.push(`${where}: the simulator calls back ${name}, the SDK never does`);
  if (!uses) return;
  const simMembers = memberSet(sim);
  const sdkMembers = memberSet(sdk);
  for (const name of uses.static) {
    if (!(name in (sdk.static ?? {})))
      problems.push(`${where}.${name}: the firmware uses it, the SDK does not have it`);
    else if (!(name in (sim.static ?? {})))
      problems.push(`${where}.${name}: the firmware uses it, the simulator lacks it`);
  }
  for (const name of uses.instance) {
    if (!sdkMembers.has(name))
      problems.push(`${where} instance .${name}: the firmware uses it, the SDK does not have it`);
    else if (!simMembers.has(name))
      problems.push(`${where} instance .${name}: the firmware uses it, the simulator lacks it`);
  }
  for (const name of uses.callbacks) {
    if (!sdk.callbacks?.includes(name)) problems.push(`${where}: the firmware sets ${name}, the SDK never calls it`);
    else if (!sim.callbacks?.includes(name))
      problems.push(`${where}: the firmware sets ${name}, the simulator never calls it`);
  }
}

/**
 * What is wrong with a simulated module against the SDK's: exports must match by name and kind;
 * the simulator may set fewer globals (none the SDK does not), but every one the firmware uses.
 */
export function compareModule(
  specifier: string,
  sim: ModuleFacts,
  sdk: ModuleFacts,
  uses: ReadonlyMap<string, Uses> = new Map(),
  usedGlobals: ReadonlySet<string> = new Set(),
): string[] {
  const problems: string[] = [];
  for (const name of Object.keys(sim.exports))
    if (!(name in sdk.exports))
      problems.push(`${specifier}: export ${name} is the simulator's only (the SDK has none)`);
  for (const name of Object.keys(sdk.exports))
    if (!(name in sim.exports))
      problems.push(`${specifier}: export ${name} is missing from the simulator (the SDK has it)`);
  for (const [name, shape] of Object.entries(sim.exports)) {
    const theirs = sdk.exports[name];
    if (theirs) compareShape(`${specifier} export ${name}`, shape, theirs, uses.get(name), problems);
  }
  for (const [name, shape] of Object.entries(sim.globals)) {
    const theirs = sdk.globals[name];
    if (!theirs) problems.push(`${specifier}: sets the global ${name}, which the SDK's module does not`);
    else compareShape(`${specifier} global ${name}`, shape, theirs, uses.get(`global:${name}`), problems);
  }
  for (const name of usedGlobals)
    if (name in sdk.globals && !(name in sim.globals))
      problems.push(`${specifier}: the firmware uses the global ${name}, which the simulator's module does not set`);
  return problems;
}
