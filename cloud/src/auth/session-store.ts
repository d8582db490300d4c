// Bearer sessions. Only the token's SHA-256 is stored (as the id), with an
// expiry checked on every use; FerretDB has no TTL indexes, so expired
// sessions are deleted when met and when their user logs in again.

import type { Collection, Db } from "mongodb";
import type { Role, SessionUser } from "./auth-schema.ts";
import { newSecret, secretHash } from "./secrets.ts";

interface SessionDoc extends SessionUser {
  _id: string;
  createdAt: Date;
  expiresAt: Date;
}

export interface IssuedSession {
  token: string;
  expiresAt: Date;
}

export class SessionStore {
  private readonly sessions: Collection<SessionDoc>;

  constructor(
    db: Db,
    private readonly ttlSeconds: number,
  ) {
    this.sessions = db.collection<SessionDoc>("sessions");
  }

  static async createIndexes(db: Db): Promise<void> {
    await db.collection<SessionDoc>("sessions").createIndex({ email: 1 });
  }

  async issue(user: SessionUser): Promise<IssuedSession> {
    const now = new Date();
    await this.sessions.deleteMany({ email: user.email, expiresAt: { $lte: now } });
    const token = newSecret();
    const expiresAt = new Date(now.getTime() + this.ttlSeconds * 1000);
    await this.sessions.insertOne({
      _id: secretHash(token),
      email: user.email,
      tenantId: user.tenantId,
      role: user.role,
      createdAt: now,
      expiresAt,
    });
    return { token, expiresAt };
  }

  async resolve(token: string): Promise<SessionUser | undefined> {
    const id = secretHash(token);
    const session = await this.sessions.findOne({ _id: id });
    if (!session) return undefined;
    if (session.expiresAt.getTime() <= Date.now()) {
      await this.sessions.deleteOne({ _id: id });
      return undefined;
    }
    return { email: session.email, tenantId: session.tenantId, role: session.role };
  }

  async revoke(token: string): Promise<void> {
    await this.sessions.deleteOne({ _id: secretHash(token) });
  }

  /** A changed role applies to the member's open sessions in that organization at once. */
  async setRole(tenantId: string, email: string, role: Role): Promise<void> {
    await this.sessions.updateMany({ email, tenantId }, { $set: { role } });
  }

  /** Ends a removed member's sessions in that organization. */
  async revokeMember(tenantId: string, email: string): Promise<void> {
    await this.sessions.deleteMany({ email, tenantId });
  }
}
