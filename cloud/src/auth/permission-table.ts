// The permission matrix as the Markdown table docs/permissions.md shows; a test keeps the two equal.

import { PERMISSIONS, ROLES, SCOPES, scopesAllow } from "./permissions.ts";

const YES = "✓";
const NO = "–";

export function permissionTable(): string {
  const header = ["permission", ...ROLES.map((role) => `role ${role}`), ...SCOPES.map((scope) => `key ${scope}`)];
  const rows = Object.entries(PERMISSIONS).map(([name, rule]) => [
    `\`${name}\``,
    ...ROLES.map((role) => (rule.roles.includes(role) ? YES : NO)),
    ...SCOPES.map((scope) => (scopesAllow([scope], name as keyof typeof PERMISSIONS) ? YES : NO)),
  ]);
  const line = (cells: string[]) => `| ${cells.join(" | ")} |`;
  return [line(header), line(header.map(() => "---")), ...rows.map(line)].join("\n");
}
