// xsl links the modules it preloads; a module that is not preloaded (`main` among ours) is linked
// only when the device boots, so a missing export there passes the build and stops a real board.
// The probe is a preloaded module that imports exactly what each of our non-preloaded modules
// imports, binding by binding, so xsl resolves every one of those imports at build time.

import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import ts from "typescript";
import { FIRMWARE_DIR } from "./sdk.ts";

export const PROBE_SPECIFIER = "kestrel-link-probe";

interface ManifestSection {
  modules?: Record<string, string | string[]>;
  preload?: string[];
}

interface Manifest extends ManifestSection {
  platforms?: Record<string, ManifestSection>;
}

/** Our own modules in a device build: specifier → TypeScript source (SDK paths and typings left out). */
export function ourDeviceModules(manifest: Manifest): Map<string, string> {
  const modules = new Map<string, string>();
  for (const section of [manifest, manifest.platforms?.esp32 ?? {}]) {
    for (const [specifier, value] of Object.entries(section.modules ?? {})) {
      // "~" lists what the build leaves out.
      if (specifier === "~") continue;
      for (const entry of Array.isArray(value) ? value : [value]) {
        if (entry.startsWith("$(") || entry.startsWith("./typings/")) continue;
        const source = join(FIRMWARE_DIR, `${entry}.ts`);
        if (existsSync(source)) modules.set(specifier === "*" ? "main" : specifier, source);
      }
    }
  }
  return modules;
}

export function readManifest(): Manifest {
  return JSON.parse(readFileSync(join(FIRMWARE_DIR, "manifest.json"), "utf8")) as Manifest;
}

/** One probe line per imported binding: `import { name as probeN } from "specifier";`. */
export interface ProbeImport {
  /** The module whose import this is. */
  importer: string;
  line: string;
}

function bindingsOf(statement: ts.ImportDeclaration | ts.ExportDeclaration): string[] {
  if (ts.isImportDeclaration(statement)) {
    const clause = statement.importClause;
    if (!clause) return [];
    const names = clause.name ? ["default"] : [];
    const bindings = clause.namedBindings;
    if (bindings && ts.isNamedImports(bindings))
      for (const element of bindings.elements) names.push((element.propertyName ?? element.name).text);
    return names;
  }
  const clause = statement.exportClause;
  if (!clause || !ts.isNamedExports(clause)) return [];
  return clause.elements.map((element) => (element.propertyName ?? element.name).text);
}

/** What a module imports at run time, as tsc emits it (type-only imports are gone). */
export function probeImports(importer: string, source: string): ProbeImport[] {
  const emitted = ts.transpileModule(readFileSync(source, "utf8"), {
    compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ESNext, verbatimModuleSyntax: true },
  }).outputText;
  const parsed = ts.createSourceFile(`${importer}.js`, emitted, ts.ScriptTarget.Latest, true, ts.ScriptKind.JS);
  const lines: ProbeImport[] = [];
  for (const statement of parsed.statements) {
    if (!(ts.isImportDeclaration(statement) || ts.isExportDeclaration(statement))) continue;
    if (!statement.moduleSpecifier || !ts.isStringLiteral(statement.moduleSpecifier)) continue;
    const from = JSON.stringify(statement.moduleSpecifier.text);
    const names = bindingsOf(statement);
    if (names.length === 0) lines.push({ importer, line: `import ${from};` });
    for (const name of names) lines.push({ importer, line: `import { ${name} as probe } from ${from};` });
  }
  return lines;
}

/** The probe's source: each import under its own local name. */
export function probeSource(imports: readonly ProbeImport[]): string {
  let n = 0;
  const lines = imports.map(({ importer, line }) => `${line.replace(" as probe ", ` as probe${n++} `)} // ${importer}`);
  return `${lines.join("\n")}\n`;
}

/** The imports of every module of ours that the manifest does not preload. */
export function notPreloadedImports(manifest: Manifest): ProbeImport[] {
  const preloaded = new Set([...(manifest.preload ?? []), ...(manifest.platforms?.esp32?.preload ?? [])]);
  const imports: ProbeImport[] = [];
  for (const [specifier, source] of ourDeviceModules(manifest))
    if (!preloaded.has(specifier)) imports.push(...probeImports(specifier, source));
  return imports;
}
