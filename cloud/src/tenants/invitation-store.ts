// Invitations to join an organization. An admin invites an email with a role; the invitee joins only
// by accepting: signed in (the invitation is listed for their email), or with the invitation's token
// and a password (their account's, or a new one when they have no account yet). Nothing an admin
// sees tells whether the email has an account anywhere. The token is shown once, stored as SHA-256.

import { randomBytes } from "node:crypto";
import type { Collection, Db } from "mongodb";
import type { Role } from "../auth/permissions.ts";
import { newSecret, secretHash, secretMatches } from "../auth/secrets.ts";

export interface InvitationDoc {
  /** The invitation id, public: 22 random URL-safe characters. */
  _id: string;
  tokenHash: string;
  tenantId: string;
  email: string;
  role: Role;
  invitedBy: string;
  createdAt: Date;
  expiresAt: Date;
}

export const INVITATION_TTL_MS = 7 * 86_400_000;
/** More than any organization needs pending at once; bounds a listing. */
const MAX_LISTED = 1000;
const TOKEN_PREFIX = "kin_";

/** `kin_<invitation id>.<secret>`: the id finds the invitation by a point read, the secret proves it. */
const TOKEN = /^kin_([A-Za-z0-9_-]{22})\.([A-Za-z0-9_-]{43})$/;
export const INVITATION_TOKEN_PATTERN = "^kin_[A-Za-z0-9_-]{22}\\.[A-Za-z0-9_-]{43}$";

export class InvitationStore {
  private readonly invitations: Collection<InvitationDoc>;

  constructor(
    db: Db,
    private readonly now: () => number = Date.now,
  ) {
    this.invitations = db.collection<InvitationDoc>("invitations");
  }

  static async createIndexes(db: Db): Promise<void> {
    const invitations = db.collection<InvitationDoc>("invitations");
    await invitations.createIndex({ tenantId: 1 });
    await invitations.createIndex({ email: 1 });
  }

  /** A new invitation, replacing one still pending for the same email here; its token is only in this answer. */
  async create(
    tenantId: string,
    email: string,
    role: Role,
    invitedBy: string,
  ): Promise<{ doc: InvitationDoc; token: string }> {
    await this.invitations.deleteMany({ tenantId, email });
    const _id = randomBytes(16).toString("base64url");
    const secret = newSecret();
    const createdAt = new Date(this.now());
    const doc: InvitationDoc = {
      _id,
      tokenHash: secretHash(secret),
      tenantId,
      email,
      role,
      invitedBy,
      createdAt,
      expiresAt: new Date(createdAt.getTime() + INVITATION_TTL_MS),
    };
    await this.invitations.insertOne(doc);
    return { doc, token: `${TOKEN_PREFIX}${_id}.${secret}` };
  }

  /** Pending (unexpired) invitations of an organization, oldest first. */
  async ofOrganization(tenantId: string): Promise<InvitationDoc[]> {
    return this.pending(await this.invitations.find({ tenantId }).limit(MAX_LISTED).toArray());
  }

  /** Pending invitations for an email, in every organization, oldest first. */
  async ofEmail(email: string): Promise<InvitationDoc[]> {
    return this.pending(await this.invitations.find({ email }).limit(MAX_LISTED).toArray());
  }

  /** The pending invitation with this id, for this email. */
  async forEmail(invitationId: string, email: string): Promise<InvitationDoc | undefined> {
    const doc = await this.invitations.findOne({ _id: invitationId });
    return doc && doc.email === email ? this.pending([doc])[0] : undefined;
  }

  /** The pending invitation this token proves, or undefined (unknown, wrong secret, expired). */
  async byToken(token: string): Promise<InvitationDoc | undefined> {
    const match = TOKEN.exec(token);
    if (!match?.[1] || !match[2]) return undefined;
    const doc = await this.invitations.findOne({ _id: match[1] });
    return doc && secretMatches(match[2], doc.tokenHash) ? this.pending([doc])[0] : undefined;
  }

  /** Deletes the invitation (accepted, declined or revoked); false when there was none. */
  async remove(invitationId: string, tenantId?: string): Promise<boolean> {
    const result = await this.invitations.deleteOne(
      tenantId === undefined ? { _id: invitationId } : { _id: invitationId, tenantId },
    );
    return result.deletedCount === 1;
  }

  private pending(docs: InvitationDoc[]): InvitationDoc[] {
    const now = this.now();
    return docs
      .filter((doc) => doc.expiresAt.getTime() > now)
      .sort((a, b) => a.createdAt.getTime() - b.createdAt.getTime() || a._id.localeCompare(b._id));
  }
}
