// Which members of the platform's modules the firmware uses, read by the TypeScript checker from the
// firmware's sources (src/, against our declarations in typings/): `Timer.set` (a member of the
// export), `client.publish` (a member of an instance), `client.onReady = ...` (a callback the
// firmware sets), `System.restart` (a member of a global a module sets).

import { join } from "node:path";
import ts from "typescript";
import type { Uses } from "./contract.ts";
import { FIRMWARE_DIR } from "./sdk.ts";

export interface FirmwareUses {
  /** module specifier → export name → uses. */
  modules: Map<string, Map<string, Uses>>;
  /** global name → uses. */
  globals: Map<string, Uses>;
}

function newUses(): Uses {
  return { static: new Set(), instance: new Set(), callbacks: new Set() };
}

function ambientModule(node: ts.Node): ts.ModuleDeclaration | undefined {
  for (let at: ts.Node | undefined = node; at; at = at.parent)
    if (ts.isModuleDeclaration(at) && ts.isStringLiteral(at.name)) return at;
  return undefined;
}

/** The statement of the module body (or the script) that declares node. */
function topStatement(node: ts.Node): ts.Statement | undefined {
  for (let at: ts.Node | undefined = node; at?.parent; at = at.parent)
    if (ts.isModuleBlock(at.parent) || ts.isSourceFile(at.parent)) return at as ts.Statement;
  return undefined;
}

/** Local names of a module declaration's runtime exports: `export default class C` → C: default. */
function exportNames(module: ts.ModuleDeclaration): Map<string, string> {
  const names = new Map<string, string>();
  const body = module.body;
  if (!body || !ts.isModuleBlock(body)) return names;
  for (const statement of body.statements) {
    const modifiers = ts.canHaveModifiers(statement) ? (ts.getModifiers(statement) ?? []) : [];
    const exported = modifiers.some((m) => m.kind === ts.SyntaxKind.ExportKeyword);
    const isDefault = modifiers.some((m) => m.kind === ts.SyntaxKind.DefaultKeyword);
    if ((ts.isClassDeclaration(statement) || ts.isFunctionDeclaration(statement)) && statement.name && exported)
      names.set(statement.name.text, isDefault ? "default" : statement.name.text);
    if (ts.isVariableStatement(statement) && exported)
      for (const declaration of statement.declarationList.declarations)
        if (ts.isIdentifier(declaration.name)) names.set(declaration.name.text, declaration.name.text);
    if (ts.isExportDeclaration(statement) && statement.exportClause && ts.isNamedExports(statement.exportClause))
      for (const element of statement.exportClause.elements)
        names.set((element.propertyName ?? element.name).text, element.name.text);
  }
  return names;
}

function declaredName(statement: ts.Statement, member: ts.Node): string | undefined {
  if ((ts.isClassDeclaration(statement) || ts.isFunctionDeclaration(statement)) && statement.name)
    return statement.name.text;
  if (ts.isVariableStatement(statement))
    for (const declaration of statement.declarationList.declarations)
      if (ts.isIdentifier(declaration.name) && member.pos >= declaration.pos && member.end <= declaration.end)
        return declaration.name.text;
  return undefined;
}

/**
 * A member of the export itself (a class's member, a property of a const's declared type); not one of
 * a type it mentions (a function's result, an option bag), and nothing of interfaces or type aliases.
 */
function ownMember(statement: ts.Statement, declaration: ts.Node): boolean {
  if (ts.isClassDeclaration(statement)) return declaration.parent === statement;
  if (!ts.isVariableStatement(statement)) return false;
  return statement.declarationList.declarations.some(
    (variable) =>
      variable.type !== undefined && ts.isTypeLiteralNode(variable.type) && declaration.parent === variable.type,
  );
}

export function firmwareUses(): FirmwareUses {
  const configPath = join(FIRMWARE_DIR, "tsconfig.json");
  const config = ts.getParsedCommandLineOfConfigFile(
    configPath,
    {},
    {
      ...ts.sys,
      onUnRecoverableConfigFileDiagnostic: (diagnostic) => {
        throw new Error(ts.flattenDiagnosticMessageText(diagnostic.messageText, "\n"));
      },
    },
  );
  if (!config) throw new Error(`cannot read ${configPath}`);
  const program = ts.createProgram(config.fileNames, config.options);
  const checker = program.getTypeChecker();
  const typings = join(FIRMWARE_DIR, "typings");
  const result: FirmwareUses = { modules: new Map(), globals: new Map() };

  const record = (node: ts.PropertyAccessExpression): void => {
    const declaration = checker.getSymbolAtLocation(node.name)?.declarations?.[0];
    if (!declaration?.getSourceFile().fileName.startsWith(typings)) return;
    const statement = topStatement(declaration);
    if (!statement || !ownMember(statement, declaration)) return;
    const name = declaredName(statement, declaration);
    if (!name) return;
    const module = ambientModule(declaration);
    let uses: Uses | undefined;
    if (module) {
      const exported = exportNames(module).get(name);
      if (!exported) return;
      const specifier = (module.name as ts.StringLiteral).text;
      const exports = result.modules.get(specifier) ?? new Map<string, Uses>();
      result.modules.set(specifier, exports);
      uses = exports.get(exported) ?? newUses();
      exports.set(exported, uses);
    } else {
      uses = result.globals.get(name) ?? newUses();
      result.globals.set(name, uses);
    }
    const member = node.name.text;
    const parent = node.parent;
    const assigned =
      ts.isBinaryExpression(parent) && parent.left === node && parent.operatorToken.kind === ts.SyntaxKind.EqualsToken;
    const onClass = ts.isClassElement(declaration) && ts.isClassDeclaration(declaration.parent);
    const isStatic =
      !onClass ||
      (ts.canHaveModifiers(declaration) &&
        (ts.getModifiers(declaration) ?? []).some((m) => m.kind === ts.SyntaxKind.StaticKeyword));
    if (assigned && !isStatic) uses.callbacks.add(member);
    else (isStatic ? uses.static : uses.instance).add(member);
  };

  for (const file of program.getSourceFiles()) {
    if (!file.fileName.startsWith(join(FIRMWARE_DIR, "src"))) continue;
    const visit = (node: ts.Node): void => {
      if (ts.isPropertyAccessExpression(node)) record(node);
      ts.forEachChild(node, visit);
    };
    visit(file);
  }
  return result;
}
