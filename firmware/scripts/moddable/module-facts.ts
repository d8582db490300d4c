// The shape of a module as the code that uses it sees it, read from its JavaScript: each export
// (and each global it sets) is a class, a function, an object or a plain value; a class has static
// and prototype members (methods and accessors), instance properties its constructor assigns, and
// callbacks it calls on its instances (`this.onReady()`, set by the application). Read the same way
// from the SDK's sources and from the simulator's, so the two can be compared.

import ts from "typescript";

export type MemberKind = "method" | "getter" | "setter" | "accessor" | "field";

export interface Shape {
  kind: "class" | "function" | "object" | "value";
  /** Members of the export itself: a class's static members, an object's properties. */
  static?: Record<string, MemberKind>;
  /** Methods and accessors on a class's prototype. */
  prototype?: Record<string, MemberKind>;
  /** Properties a class's constructor assigns or its fields declare. */
  instance?: string[];
  /** Callbacks a class calls on its instances without defining them. */
  callbacks?: string[];
}

export interface ModuleFacts {
  exports: Record<string, Shape>;
  /** What the module sets on globalThis. */
  globals: Record<string, Shape>;
}

/** Facts of another module, for `import X from "m"; export default X;`. */
export type ImportResolver = (specifier: string) => ModuleFacts | undefined;

function merge(kinds: Record<string, MemberKind>, name: string, kind: MemberKind): void {
  const previous = kinds[name];
  kinds[name] =
    previous && previous !== kind && (previous === "getter" || previous === "setter" || previous === "accessor")
      ? "accessor"
      : kind;
}

function memberName(name: ts.PropertyName | undefined): string | undefined {
  if (!name || ts.isPrivateIdentifier(name) || ts.isComputedPropertyName(name)) return undefined;
  return name.text;
}

function isStatic(member: ts.ClassElement): boolean {
  return (
    ts.canHaveModifiers(member) && (ts.getModifiers(member) ?? []).some((m) => m.kind === ts.SyntaxKind.StaticKeyword)
  );
}

/** A class's own members over those it inherits (base: the shape of its `extends` class, if known). */
function classShape(node: ts.ClassLikeDeclaration, base: Shape | undefined): Shape {
  const inherited = base?.kind === "class" ? base : undefined;
  const statics: Record<string, MemberKind> = { ...inherited?.static };
  const prototype: Record<string, MemberKind> = { ...inherited?.prototype };
  const instance = new Set<string>(inherited?.instance);
  const called = new Set<string>(inherited?.callbacks);
  for (const member of node.members) {
    const name = memberName(member.name);
    if (ts.isConstructorDeclaration(member)) {
      for (const parameter of member.parameters)
        if (ts.isIdentifier(parameter.name) && ts.getModifiers(parameter)?.length) instance.add(parameter.name.text);
    }
    if (name === undefined) continue;
    const target = isStatic(member) ? statics : prototype;
    if (ts.isMethodDeclaration(member)) merge(target, name, "method");
    else if (ts.isGetAccessorDeclaration(member)) merge(target, name, "getter");
    else if (ts.isSetAccessorDeclaration(member)) merge(target, name, "setter");
    else if (ts.isPropertyDeclaration(member)) {
      if (isStatic(member)) merge(statics, name, "field");
      else instance.add(name);
    }
  }
  const visit = (child: ts.Node): void => {
    if (
      ts.isPropertyAccessExpression(child) &&
      child.expression.kind === ts.SyntaxKind.ThisKeyword &&
      !ts.isPrivateIdentifier(child.name)
    ) {
      const name = child.name.text;
      const parent = child.parent;
      if (
        ts.isBinaryExpression(parent) &&
        parent.left === child &&
        parent.operatorToken.kind === ts.SyntaxKind.EqualsToken
      )
        instance.add(name);
      else if (ts.isCallExpression(parent) && parent.expression === child) called.add(name);
    }
    // A nested class has its own `this`.
    if (!ts.isClassLike(child)) ts.forEachChild(child, visit);
  };
  for (const member of node.members) ts.forEachChild(member, visit);
  // Called on instances but not defined by the class: callbacks the application sets.
  const callbacks = [...called].filter((name) => !(name in prototype)).sort();
  return {
    kind: "class",
    static: statics,
    prototype,
    instance: [...instance].filter((name) => !(name in prototype) && !called.has(name)).sort(),
    ...(callbacks.length > 0 ? { callbacks } : {}),
  };
}

function objectShape(node: ts.ObjectLiteralExpression): Shape {
  const members: Record<string, MemberKind> = {};
  for (const property of node.properties) {
    const name = memberName(property.name);
    if (name === undefined) continue;
    if (ts.isMethodDeclaration(property)) merge(members, name, "method");
    else if (ts.isGetAccessorDeclaration(property)) merge(members, name, "getter");
    else if (ts.isSetAccessorDeclaration(property)) merge(members, name, "setter");
    else if (
      ts.isPropertyAssignment(property) &&
      (ts.isFunctionExpression(property.initializer) || ts.isArrowFunction(property.initializer))
    )
      merge(members, name, "method");
    else merge(members, name, "field");
  }
  return { kind: "object", static: members };
}

export function moduleFacts(module: ts.SourceFile, resolve: ImportResolver = () => undefined): ModuleFacts {
  const locals = new Map<string, () => Shape>();
  const shapes = new Map<string, Shape>();
  const facts: ModuleFacts = { exports: {}, globals: {} };

  const describe = (node: ts.Node | undefined): Shape => {
    if (!node) return { kind: "value" };
    if (ts.isParenthesizedExpression(node) || ts.isAsExpression(node) || ts.isSatisfiesExpression(node))
      return describe(node.expression);
    if (ts.isClassLike(node)) {
      const heritage = node.heritageClauses?.find((clause) => clause.token === ts.SyntaxKind.ExtendsKeyword);
      return classShape(node, heritage ? describe(heritage.types[0]?.expression) : undefined);
    }
    if (ts.isFunctionLike(node)) return { kind: "function" };
    if (ts.isObjectLiteralExpression(node)) return objectShape(node);
    if (ts.isIdentifier(node)) return shapeOf(node.text);
    // Object.freeze(x) and XS's Object.freeze(x, true) are x.
    if (ts.isCallExpression(node) && node.expression.getText() === "Object.freeze") return describe(node.arguments[0]);
    return { kind: "value" };
  };
  const shapeOf = (name: string): Shape => {
    let shape = shapes.get(name);
    if (!shape) {
      shape = locals.get(name)?.() ?? { kind: "value" };
      shapes.set(name, shape);
    }
    return shape;
  };

  for (const statement of module.statements) {
    if ((ts.isClassDeclaration(statement) || ts.isFunctionDeclaration(statement)) && statement.name)
      locals.set(statement.name.text, () => describe(statement));
    else if (ts.isVariableStatement(statement)) {
      for (const declaration of statement.declarationList.declarations)
        if (ts.isIdentifier(declaration.name))
          locals.set(declaration.name.text, () => describe(declaration.initializer));
    } else if (ts.isImportDeclaration(statement) && ts.isStringLiteral(statement.moduleSpecifier)) {
      const from = statement.moduleSpecifier.text;
      const clause = statement.importClause;
      // A copy: members added here (X.name = ...) stay in this module.
      const imported = (name: string) => () =>
        structuredClone(resolve(from)?.exports[name] ?? { kind: "value" as const });
      if (clause?.name) locals.set(clause.name.text, imported("default"));
      const bindings = clause?.namedBindings;
      if (bindings && ts.isNamedImports(bindings))
        for (const element of bindings.elements)
          locals.set(element.name.text, imported((element.propertyName ?? element.name).text));
    }
  }

  for (const statement of module.statements) {
    // X.name = value: a static member added after the class (`I2C.Async = class ...`).
    if (ts.isExpressionStatement(statement) && ts.isBinaryExpression(statement.expression)) {
      const { left, right, operatorToken } = statement.expression;
      if (operatorToken.kind !== ts.SyntaxKind.EqualsToken || !ts.isPropertyAccessExpression(left)) continue;
      const target = left.expression;
      if (ts.isIdentifier(target) && target.text === "globalThis") facts.globals[left.name.text] = describe(right);
      else if (ts.isIdentifier(target) && locals.has(target.text)) {
        const shape = shapeOf(target.text);
        const kind = describe(right).kind;
        shape.static = { ...shape.static, [left.name.text]: kind === "function" ? "method" : "field" };
      }
    }
  }

  for (const statement of module.statements) {
    const exported =
      ts.canHaveModifiers(statement) &&
      (ts.getModifiers(statement) ?? []).some((m) => m.kind === ts.SyntaxKind.ExportKeyword);
    const isDefault =
      ts.canHaveModifiers(statement) &&
      (ts.getModifiers(statement) ?? []).some((m) => m.kind === ts.SyntaxKind.DefaultKeyword);
    if (ts.isExportAssignment(statement)) facts.exports.default = describe(statement.expression);
    else if (exported && (ts.isClassDeclaration(statement) || ts.isFunctionDeclaration(statement))) {
      const name = isDefault ? "default" : statement.name?.text;
      if (name) facts.exports[name] = statement.name ? shapeOf(statement.name.text) : describe(statement);
    } else if (exported && ts.isVariableStatement(statement)) {
      for (const declaration of statement.declarationList.declarations)
        if (ts.isIdentifier(declaration.name)) facts.exports[declaration.name.text] = shapeOf(declaration.name.text);
    } else if (
      ts.isExportDeclaration(statement) &&
      statement.exportClause &&
      ts.isNamedExports(statement.exportClause)
    ) {
      const from =
        statement.moduleSpecifier && ts.isStringLiteral(statement.moduleSpecifier)
          ? statement.moduleSpecifier.text
          : undefined;
      for (const element of statement.exportClause.elements) {
        const local = (element.propertyName ?? element.name).text;
        facts.exports[element.name.text] = from ? (resolve(from)?.exports[local] ?? { kind: "value" }) : shapeOf(local);
      }
    }
  }
  return facts;
}
