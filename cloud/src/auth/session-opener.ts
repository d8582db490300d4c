// Opens a user session bound to one of the user's organizations and answers it the way login does,
// with every organization the user may switch to. Used by login, switch and accepting an invitation.

import type { Db } from "mongodb";
import type { MembershipDoc } from "../tenants/membership-store.ts";
import { TenantStore } from "../tenants/tenant-store.ts";
import type { LoginAnswer, OrganizationRef, SessionUser } from "./auth-schema.ts";
import { SessionStore } from "./session-store.ts";

export class SessionOpener {
  private readonly sessions: SessionStore;
  private readonly tenants: TenantStore;

  constructor(db: Db, sessionTtlSeconds: number) {
    this.sessions = new SessionStore(db, sessionTtlSeconds);
    this.tenants = new TenantStore(db);
  }

  async organizationsOf(docs: MembershipDoc[]): Promise<OrganizationRef[]> {
    const refs: OrganizationRef[] = [];
    for (const membership of docs) {
      const tenant = await this.tenants.find(membership.tenantId);
      if (tenant) refs.push({ tenantId: tenant._id, name: tenant.name, role: membership.role });
    }
    return refs;
  }

  async open(email: string, chosen: MembershipDoc, all: MembershipDoc[]): Promise<LoginAnswer> {
    const user: SessionUser = { email, tenantId: chosen.tenantId, role: chosen.role };
    const session = await this.sessions.issue(user);
    return {
      token: session.token,
      expiresAt: session.expiresAt.getTime(),
      user,
      organizations: await this.organizationsOf(all),
    };
  }
}
