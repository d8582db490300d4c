// API keys: an organization's long-lived bearer secrets with scopes. Only the key's SHA-256 is
// stored, as the document id, so resolving a key on a request is a point read; `keyId` is the
// public handle for listing and revoking. Revoked keys are kept (marked) so listings show them.

import { randomUUID } from "node:crypto";
import type { Collection, Db } from "mongodb";
import type { Scope } from "../auth/permissions.ts";
import { newSecret, secretHash } from "../auth/secrets.ts";

export interface KeyDoc {
  _id: string;
  keyId: string;
  tenantId: string;
  name: string;
  scopes: Scope[];
  createdAt: Date;
  createdBy: string;
  expiresAt: Date | null;
  lastUsedAt: Date | null;
  revokedAt: Date | null;
}

export interface NewKey {
  name: string;
  scopes: Scope[];
  expiresAt: Date | null;
  createdBy: string;
}

export interface ResolvedKey {
  keyId: string;
  tenantId: string;
  scopes: Scope[];
}

/** Tells API keys apart from session tokens and gateway keys at a glance (and in secret scanners). */
export const KEY_PREFIX = "kst_";
/** Active keys per organization; bounds listings. */
export const MAX_ACTIVE_KEYS = 100;
/** lastUsedAt is written at most this often per key, not on every request. */
export const LAST_USED_RESOLUTION_MS = 60_000;

export class KeyStore {
  private readonly keys: Collection<KeyDoc>;

  constructor(
    db: Db,
    private readonly now: () => number = Date.now,
  ) {
    this.keys = db.collection<KeyDoc>("api_keys");
  }

  static async createIndexes(db: Db): Promise<void> {
    await db.collection<KeyDoc>("api_keys").createIndex({ tenantId: 1, keyId: 1 });
  }

  /** Stores a new key and returns its document and the plaintext, which exists nowhere else. */
  async create(tenantId: string, key: NewKey): Promise<{ doc: KeyDoc; secret: string }> {
    const secret = `${KEY_PREFIX}${newSecret()}`;
    const doc: KeyDoc = {
      _id: secretHash(secret),
      keyId: randomUUID(),
      tenantId,
      name: key.name,
      scopes: key.scopes,
      createdAt: new Date(this.now()),
      createdBy: key.createdBy,
      expiresAt: key.expiresAt,
      lastUsedAt: null,
      revokedAt: null,
    };
    await this.keys.insertOne(doc);
    return { doc, secret };
  }

  countActive(tenantId: string): Promise<number> {
    return this.keys.countDocuments({ tenantId, revokedAt: null });
  }

  async list(tenantId: string): Promise<KeyDoc[]> {
    const docs = await this.keys
      .find({ tenantId })
      .limit(10 * MAX_ACTIVE_KEYS)
      .toArray();
    return docs.sort((a, b) => b.createdAt.getTime() - a.createdAt.getTime());
  }

  find(tenantId: string, keyId: string): Promise<KeyDoc | null> {
    return this.keys.findOne({ tenantId, keyId });
  }

  async revoke(tenantId: string, keyId: string): Promise<void> {
    await this.keys.updateOne({ tenantId, keyId, revokedAt: null }, { $set: { revokedAt: new Date(this.now()) } });
  }

  /** The key's organization and scopes when it is known, not revoked and not expired. */
  async resolve(secret: string): Promise<ResolvedKey | undefined> {
    if (!secret.startsWith(KEY_PREFIX)) return undefined;
    const doc = await this.keys.findOne({ _id: secretHash(secret) });
    const now = this.now();
    if (!doc || doc.revokedAt !== null || (doc.expiresAt !== null && doc.expiresAt.getTime() <= now)) {
      return undefined;
    }
    if (doc.lastUsedAt === null || now - doc.lastUsedAt.getTime() >= LAST_USED_RESOLUTION_MS) {
      await this.keys.updateOne({ _id: doc._id }, { $set: { lastUsedAt: new Date(now) } });
    }
    return { keyId: doc.keyId, tenantId: doc.tenantId, scopes: doc.scopes };
  }
}
