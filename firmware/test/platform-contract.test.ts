// The simulator stands in for the Moddable SDK's modules only where it matches them: every module the
// manifest's kestrel-sim section maps is held to the platform contract (the SDK's own module facts,
// generated from the SDK and committed: platform-contract.json) or, for our own device modules, to
// the device source. Our declarations in typings/ are held to the same facts. A simulator module
// that adds an export the SDK lacks, drops one it has, or lacks a member the firmware uses fails here.

import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import ts from "typescript";
import { compareModule, readContract, typeScriptModuleFacts } from "../scripts/moddable/contract.ts";
import { firmwareUses } from "../scripts/moddable/firmware-uses.ts";
import { ourDeviceModules, readManifest } from "../scripts/moddable/link-probe.ts";
import { FIRMWARE_DIR } from "../scripts/moddable/sdk.ts";

const contract = readContract();
const manifest = readManifest();
const ours = ourDeviceModules(manifest);
const simulated = Object.entries(manifest.platforms?.["kestrel-sim"]?.modules ?? {}).map(([specifier, path]) => ({
  specifier,
  file: join(FIRMWARE_DIR, `${String(path)}.ts`),
}));
const uses = firmwareUses();
const usedGlobals = new Set(uses.globals.keys());

function globalUses(): Map<string, import("../scripts/moddable/contract.ts").Uses> {
  return new Map(Array.from(uses.globals, ([name, used]) => [`global:${name}`, used]));
}

/** Problems of one simulated module: against the contract, or against our own device module. */
function problemsOf(specifier: string, source: string, file: string): string[] {
  const sim = typeScriptModuleFacts(file, source);
  const device = ours.get(specifier);
  if (device) return compareModule(specifier, sim, typeScriptModuleFacts(device));
  const sdk = contract.modules[specifier];
  if (!sdk) return [`${specifier}: not in platform-contract.json; regenerate it: ${contract.command}`];
  const used = new Map([...(uses.modules.get(specifier) ?? new Map()), ...globalUses()]);
  return compareModule(specifier, sim, sdk, used, usedGlobals);
}

test("every module the simulator maps matches the SDK's (or our device module): exports, kinds, members the firmware uses", () => {
  assert.ok(simulated.length >= 10, "the kestrel-sim section is read");
  const problems = simulated.flatMap(({ specifier, file }) => problemsOf(specifier, readFileSync(file, "utf8"), file));
  assert.deepEqual(problems, []);
});

test("every platform module the firmware uses is simulated, and each used member is one the SDK has", () => {
  const mapped = new Set(simulated.map(({ specifier }) => specifier));
  for (const specifier of uses.modules.keys()) {
    if (ours.has(specifier) || specifier === "mc/config") continue;
    assert.ok(mapped.has(specifier), `the firmware uses ${specifier}, which the simulator does not map`);
  }
  assert.ok(uses.modules.get("timer")?.get("default")?.static.has("set"), "Timer.set is seen as used");
  assert.ok(uses.modules.get("mqtt")?.get("default")?.callbacks.has("onReady"), "client.onReady is seen as set");
  assert.ok(uses.globals.get("System")?.static.has("restart"), "System.restart is seen as used");
});

test("the contract test fails when a simulator module adds an export the SDK lacks or drops one it has", () => {
  const time = simulated.find(({ specifier }) => specifier === "time");
  const timer = simulated.find(({ specifier }) => specifier === "timer");
  const system = simulated.find(({ specifier }) => specifier === "system");
  assert.ok(time && timer && system);
  const timeSource = readFileSync(time.file, "utf8");
  assert.deepEqual(problemsOf("time", timeSource, time.file), []);
  assert.match(
    problemsOf("time", `${timeSource}\nexport const epoch = 0;\n`, time.file).join("\n"),
    /time: export epoch is the simulator's only/,
  );
  const timerSource = readFileSync(timer.file, "utf8");
  const withoutDefault = timerSource.replace(/\nexport default \w+;\n|export default class/, (found) =>
    found.startsWith("export default class") ? "class" : "\n",
  );
  assert.notEqual(withoutDefault, timerSource);
  assert.match(
    problemsOf("timer", withoutDefault, timer.file).join("\n"),
    /timer: export default is missing from the simulator/,
  );
  assert.match(
    problemsOf("system", `${readFileSync(system.file, "utf8")}\nexport default 1;\n`, system.file).join("\n"),
    /system: export default is the simulator's only/,
  );
  assert.match(
    problemsOf(
      "time",
      timeSource.replace("static delta(", "static later(): number {\n    return 0;\n  }\n\n  static delta("),
      time.file,
    ).join("\n"),
    /later: the simulator has it, the SDK does not/,
  );
});

test("our declarations in typings/ export what the SDK's modules export, with the same kinds", () => {
  const problems: string[] = [];
  const kinds = new Map<string, Map<string, string>>();
  for (const name of readdirSync(join(FIRMWARE_DIR, "typings"))) {
    const path = join(FIRMWARE_DIR, "typings", name);
    const file = ts.createSourceFile(path, readFileSync(path, "utf8"), ts.ScriptTarget.Latest, true);
    for (const statement of file.statements) {
      if (!ts.isModuleDeclaration(statement) || !ts.isStringLiteral(statement.name)) continue;
      const exports = new Map<string, string>();
      const locals = new Map<string, string>();
      const body = statement.body && ts.isModuleBlock(statement.body) ? statement.body.statements : [];
      for (const inner of body) {
        const modifiers = ts.canHaveModifiers(inner) ? (ts.getModifiers(inner) ?? []) : [];
        const exported = modifiers.some((m) => m.kind === ts.SyntaxKind.ExportKeyword);
        const isDefault = modifiers.some((m) => m.kind === ts.SyntaxKind.DefaultKeyword);
        const kind = ts.isClassDeclaration(inner) ? "class" : ts.isFunctionDeclaration(inner) ? "function" : "object";
        if ((ts.isClassDeclaration(inner) || ts.isFunctionDeclaration(inner)) && inner.name) {
          locals.set(inner.name.text, kind);
          if (exported) exports.set(isDefault ? "default" : inner.name.text, kind);
        }
        if (ts.isVariableStatement(inner))
          for (const declaration of inner.declarationList.declarations)
            if (ts.isIdentifier(declaration.name)) locals.set(declaration.name.text, "object");
        if (ts.isExportAssignment(inner) && ts.isIdentifier(inner.expression))
          exports.set("default", locals.get(inner.expression.text) ?? "value");
        if (ts.isExportDeclaration(inner) && inner.exportClause && ts.isNamedExports(inner.exportClause))
          for (const element of inner.exportClause.elements)
            exports.set(element.name.text, locals.get((element.propertyName ?? element.name).text) ?? "value");
      }
      kinds.set(statement.name.text, exports);
    }
  }
  for (const [specifier, exports] of kinds) {
    const sdk = contract.modules[specifier];
    if (!sdk) continue;
    for (const [name, kind] of exports) {
      const theirs = sdk.exports[name]?.kind;
      // A declaration may type a class's statics as an object of the same members.
      if (theirs === undefined) problems.push(`typings ${specifier}: declares export ${name}, the SDK has none`);
      else if (kind !== theirs && !(kind === "object" && theirs === "class"))
        problems.push(`typings ${specifier}: export ${name} declared a ${kind}, the SDK's is a ${theirs}`);
    }
    for (const name of Object.keys(sdk.exports))
      if (!exports.has(name)) problems.push(`typings ${specifier}: the SDK exports ${name}, the declaration does not`);
  }
  assert.deepEqual(problems, []);
  assert.ok(kinds.has("mqtt") && kinds.has("resetReason"), "the SDK does not type these two: ours are checked");
});
