// Reads a Moddable module's JavaScript with TypeScript's parser. XS adds one syntax of its own, host
// functions and host classes (`function f() @ "xs_f";`, `class C @ "xs_destructor" {`): it is
// replaced by an empty body first, so the rest parses as standard JavaScript.

import { readFileSync } from "node:fs";
import ts from "typescript";

export function withoutHostSyntax(source: string): string {
  return source
    .replace(/(\bclass\s+[\w$]+(?:\s+extends\s+[^{@]+?)?)\s*@\s*"[^"]*"\s*\{/g, "$1 {")
    .replace(/\)\s*@\s*"[^"]*"\s*;?/g, ") {}");
}

export function parseModule(path: string, source = readFileSync(path, "utf8")): ts.SourceFile {
  return ts.createSourceFile(path, withoutHostSyntax(source), ts.ScriptTarget.Latest, true, ts.ScriptKind.JS);
}

/** Specifiers of the module's static imports and re-exports (`import x from "a"`, `export * from "b"`). */
export function importedSpecifiers(module: ts.SourceFile): string[] {
  const specifiers: string[] = [];
  for (const statement of module.statements) {
    if (
      (ts.isImportDeclaration(statement) || ts.isExportDeclaration(statement)) &&
      statement.moduleSpecifier &&
      ts.isStringLiteral(statement.moduleSpecifier)
    )
      specifiers.push(statement.moduleSpecifier.text);
  }
  return specifiers;
}
