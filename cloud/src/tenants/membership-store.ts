// Who belongs to which organization, with which role. One document per (organization, user), its id
// `<tenantId>|<email>`, so every membership check is a point read scoped by the organization.

import { createHash } from "node:crypto";
import { type Collection, type Db, MongoServerError } from "mongodb";
import type { Role } from "../auth/permissions.ts";

export interface MembershipDoc {
  _id: string;
  tenantId: string;
  email: string;
  role: Role;
  createdAt: Date;
}

const DUPLICATE_KEY = 11000;
/** More than any organization of this platform needs; bounds a listing's size. */
export const MAX_MEMBERS = 1000;

function membershipId(tenantId: string, email: string): string {
  return `${tenantId}|${email}`;
}

/**
 * How the API addresses a member: 22 URL-safe characters derived from the email, so a path stays
 * short whatever the email's length (up to 254) and no stored document needs a new field.
 */
export function memberIdOf(email: string): string {
  return createHash("sha256").update(email, "utf8").digest("base64url").slice(0, 22);
}

export class MembershipStore {
  private readonly memberships: Collection<MembershipDoc>;

  constructor(db: Db) {
    this.memberships = db.collection<MembershipDoc>("memberships");
  }

  static async createIndexes(db: Db): Promise<void> {
    const memberships = db.collection<MembershipDoc>("memberships");
    await memberships.createIndex({ email: 1 });
    await memberships.createIndex({ tenantId: 1 });
  }

  find(tenantId: string, email: string): Promise<MembershipDoc | null> {
    return this.memberships.findOne({ _id: membershipId(tenantId, email) });
  }

  /** A user's organizations, oldest membership first: login without an `organization` picks the first. */
  async ofUser(email: string): Promise<MembershipDoc[]> {
    const docs = await this.memberships.find({ email }).limit(MAX_MEMBERS).toArray();
    return docs.sort((a, b) => a.createdAt.getTime() - b.createdAt.getTime() || a._id.localeCompare(b._id));
  }

  /** The member of this organization with this member id, if any. */
  async byMemberId(tenantId: string, memberId: string): Promise<MembershipDoc | undefined> {
    return (await this.ofOrganization(tenantId)).find((doc) => memberIdOf(doc.email) === memberId);
  }

  async ofOrganization(tenantId: string): Promise<MembershipDoc[]> {
    const docs = await this.memberships.find({ tenantId }).limit(MAX_MEMBERS).toArray();
    return docs.sort((a, b) => a.email.localeCompare(b.email));
  }

  /** Adds the membership; false when the user already is a member. */
  async add(tenantId: string, email: string, role: Role): Promise<boolean> {
    try {
      await this.memberships.insertOne({
        _id: membershipId(tenantId, email),
        tenantId,
        email,
        role,
        createdAt: new Date(),
      });
      return true;
    } catch (error) {
      if (error instanceof MongoServerError && error.code === DUPLICATE_KEY) return false;
      throw error;
    }
  }

  /** Creates the membership or sets its role. */
  async ensure(tenantId: string, email: string, role: Role): Promise<void> {
    await this.memberships.updateOne(
      { _id: membershipId(tenantId, email) },
      { $set: { tenantId, email, role }, $setOnInsert: { createdAt: new Date() } },
      { upsert: true },
    );
  }

  async setRole(tenantId: string, email: string, role: Role): Promise<void> {
    await this.memberships.updateOne({ _id: membershipId(tenantId, email) }, { $set: { role } });
  }

  async remove(tenantId: string, email: string): Promise<void> {
    await this.memberships.deleteOne({ _id: membershipId(tenantId, email) });
  }

  countAdmins(tenantId: string): Promise<number> {
    return this.memberships.countDocuments({ tenantId, role: "admin" });
  }
}
