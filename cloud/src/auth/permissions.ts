// The permission matrix: which role may do what in its organization, and which API key scope a
// permission needs. The only place access rules live; routes name a permission and the access
// hook (access.ts) enforces it. docs/permissions.md is this table in prose.

export const ROLES = ["admin", "user", "viewer"] as const;
export type Role = (typeof ROLES)[number];

export const SCOPES = ["read", "write", "ingest", "admin"] as const;
export type Scope = (typeof SCOPES)[number];

const EVERYONE: readonly Role[] = ROLES;
const OPERATORS: readonly Role[] = ["admin", "user"];
const ADMINS: readonly Role[] = ["admin"];

interface Rule {
  roles: readonly Role[];
  /** The API key scope that grants this permission; null: no API key may, only a user's session. */
  scope: Scope | null;
}

export const PERMISSIONS = Object.freeze({
  "account:self": { roles: EVERYONE, scope: null },
  "devices:read": { roles: EVERYONE, scope: "read" },
  "devices:write": { roles: OPERATORS, scope: "write" },
  "telemetry:read": { roles: EVERYONE, scope: "read" },
  "commands:read": { roles: EVERYONE, scope: "read" },
  "commands:write": { roles: OPERATORS, scope: "write" },
  "exports:read": { roles: EVERYONE, scope: "read" },
  "exports:write": { roles: OPERATORS, scope: "write" },
  "alerts:read": { roles: EVERYONE, scope: "read" },
  "alerts:write": { roles: OPERATORS, scope: "write" },
  "webhooks:read": { roles: EVERYONE, scope: "read" },
  "webhooks:write": { roles: OPERATORS, scope: "write" },
  "org:read": { roles: EVERYONE, scope: "read" },
  "artifacts:read": { roles: EVERYONE, scope: "read" },
  "artifacts:write": { roles: OPERATORS, scope: "write" },
  "campaigns:read": { roles: EVERYONE, scope: "read" },
  "campaigns:write": { roles: OPERATORS, scope: "write" },
  "signing:admin": { roles: ADMINS, scope: "admin" },
  "members:admin": { roles: ADMINS, scope: "admin" },
  "keys:admin": { roles: ADMINS, scope: "admin" },
  "settings:admin": { roles: ADMINS, scope: "admin" },
} satisfies Record<string, Rule>);

export type Permission = keyof typeof PERMISSIONS;

export function isPermission(name: string): name is Permission {
  return Object.hasOwn(PERMISSIONS, name);
}

export function roleAllows(role: Role, permission: Permission): boolean {
  return PERMISSIONS[permission].roles.includes(role);
}

/**
 * An `admin` key may do everything a key may; otherwise the key needs the permission's own scope.
 * Permissions without a scope (the caller's own session) are never a key's.
 */
export function scopesAllow(scopes: readonly Scope[], permission: Permission): boolean {
  const scope: Scope | null = PERMISSIONS[permission].scope;
  return scope !== null && (scopes.includes("admin") || scopes.includes(scope));
}

/** Whether an API key may stand in for a site gateway (ingest, device credential checks). */
export function scopesAllowGateway(scopes: readonly Scope[]): boolean {
  return scopes.includes("ingest") || scopes.includes("admin");
}
