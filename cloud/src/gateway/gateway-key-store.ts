// Gateway keys: a per-tenant secret a site gateway presents as a bearer token.
// Only its SHA-256 is stored, as the document id, so a lookup is a point read.

import type { Collection, Db } from "mongodb";
import { newSecret, secretHash } from "../auth/secrets.ts";

interface GatewayKeyDoc {
  _id: string;
  tenantId: string;
  name: string;
  createdAt: Date;
}

export class GatewayKeyStore {
  private readonly keys: Collection<GatewayKeyDoc>;

  constructor(db: Db) {
    this.keys = db.collection<GatewayKeyDoc>("gateway_keys");
  }

  static async createIndexes(db: Db): Promise<void> {
    await db.collection<GatewayKeyDoc>("gateway_keys").createIndex({ tenantId: 1, name: 1 });
  }

  /** Issues a new key under this name, revoking the name's previous keys; returns the plaintext once. */
  async issue(tenantId: string, name: string): Promise<string> {
    const key = `kgw_${newSecret()}`;
    await this.keys.deleteMany({ tenantId, name });
    await this.keys.insertOne({ _id: secretHash(key), tenantId, name, createdAt: new Date() });
    return key;
  }

  /** The tenant a key belongs to. */
  async tenantOf(key: string): Promise<string | undefined> {
    const doc = await this.keys.findOne({ _id: secretHash(key) });
    return doc?.tenantId;
  }
}
