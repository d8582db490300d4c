// Gateway keys: a per-tenant secret a site gateway presents as a bearer token.
// Only its SHA-256 is stored, as the document id, so a lookup is a point read.
// A key found is trusted for KNOWN_KEY_TTL_MS without asking again: a busy
// gateway sends every ingest request with it, and the lookup was a third of
// what the cloud's ingest route waited on (issue 11). A key re-issued from
// another process (bootstrap) stops working in this one within that time.

import type { Collection, Db } from "mongodb";
import { newSecret, secretHash } from "../auth/secrets.ts";

interface GatewayKeyDoc {
  _id: string;
  tenantId: string;
  name: string;
  createdAt: Date;
}

/** How long a key found is trusted without a lookup. */
export const KNOWN_KEY_TTL_MS = 10_000;
/** Keys remembered at most; past it the memory starts over (a flood of distinct valid keys is no real load). */
const KNOWN_KEYS_MAX = 10_000;

/** Per database, in this process, by key hash: the tenant, and until when that answer is trusted (epoch ms). */
const knownKeys = new WeakMap<Db, Map<string, { tenantId: string; until: number }>>();

export class GatewayKeyStore {
  private readonly keys: Collection<GatewayKeyDoc>;
  private readonly known: Map<string, { tenantId: string; until: number }>;

  /** `now`: the clock a key's trust is timed by (tests set it). */
  constructor(
    db: Db,
    private readonly now: () => number = Date.now,
  ) {
    this.keys = db.collection<GatewayKeyDoc>("gateway_keys");
    this.known = knownKeys.get(db) ?? new Map();
    knownKeys.set(db, this.known);
  }

  static async createIndexes(db: Db): Promise<void> {
    await db.collection<GatewayKeyDoc>("gateway_keys").createIndex({ tenantId: 1, name: 1 });
  }

  /** Issues a new key under this name, revoking the name's previous keys; returns the plaintext once. */
  async issue(tenantId: string, name: string): Promise<string> {
    const key = `kgw_${newSecret()}`;
    await this.keys.deleteMany({ tenantId, name });
    // This process stops trusting the tenant's keys at once (the name's previous ones among them).
    for (const [hash, known] of this.known) if (known.tenantId === tenantId) this.known.delete(hash);
    await this.keys.insertOne({ _id: secretHash(key), tenantId, name, createdAt: new Date() });
    return key;
  }

  /** The tenant a key belongs to. */
  async tenantOf(key: string): Promise<string | undefined> {
    const hash = secretHash(key);
    const now = this.now();
    const known = this.known.get(hash);
    if (known && known.until > now) return known.tenantId;
    const doc = await this.keys.findOne({ _id: hash });
    if (!doc) {
      this.known.delete(hash);
      return undefined;
    }
    if (this.known.size >= KNOWN_KEYS_MAX) this.known.clear();
    this.known.set(hash, { tenantId: doc.tenantId, until: now + KNOWN_KEY_TTL_MS });
    return doc.tenantId;
  }
}
