// An organization's signing keys and the chain of trust records that devices follow. Private keys
// are sealed with the secret box and opened only to sign; they never leave this module. The chain is
// the single source of truth: record 0 (never sent to devices, which are provisioned with it) names
// the first key; every later record is signed by the key that was active before it and adds and/or
// retires keys. Which key is active, retired or revoked is read from the chain, so a crash between
// writes leaves at worst an unused key document, never a key devices cannot follow.

import type { SignedText, TrustKey, TrustRecord } from "@kestrel/wire/artifacts";
import type { Collection, Db } from "mongodb";
import type { SecretBox } from "../auth/secret-box.ts";
import { Problem } from "../http/problem.ts";
import { generateSigningKey, signText, verifyText } from "./p256.ts";

export type KeyStatus = "active" | "retired" | "revoked";

interface SigningKeyDoc {
  _id: string;
  tenantId: string;
  keyId: string;
  publicKey: string;
  /** The PKCS#8 PEM, sealed (SecretBox). */
  sealedPrivateKey: string;
  createdAt: Date;
  createdBy: string;
}

type TrustAction = "genesis" | "rotate" | "revoke";

interface TrustRecordDoc {
  _id: string;
  tenantId: string;
  seq: number;
  action: TrustAction;
  add: string[];
  retire: string[];
  /** The signed record as devices receive it; absent for record 0. */
  signed?: SignedText;
  createdAt: Date;
  createdBy: string;
}

export interface SigningKeyView {
  keyId: string;
  publicKey: string;
  status: KeyStatus;
  createdAt: number;
  createdBy: string;
  /** When it stopped being trusted (rotated out or revoked); null while active. */
  retiredAt: number | null;
}

/** Trust records a device can be sent at most; an offer carries them all (wire ARTIFACT_LIMITS.trustRecords). */
export const MAX_TRUST_RECORDS = 16;
const DUPLICATE_KEY = 11000;

function recordId(tenantId: string, seq: number): string {
  return `${tenantId}|${seq}`;
}

interface ChainState {
  active: string | undefined;
  status: Map<string, { status: KeyStatus; retiredAt: Date | null }>;
  lastSeq: number;
}

function fold(records: TrustRecordDoc[]): ChainState {
  const state: ChainState = { active: undefined, status: new Map(), lastSeq: -1 };
  for (const record of records) {
    for (const keyId of record.add) {
      state.status.set(keyId, { status: "active", retiredAt: null });
      state.active = keyId;
    }
    for (const keyId of record.retire) {
      state.status.set(keyId, {
        status: record.action === "revoke" ? "revoked" : "retired",
        retiredAt: record.createdAt,
      });
      if (state.active === keyId) state.active = undefined;
    }
    state.lastSeq = record.seq;
  }
  return state;
}

export class SigningService {
  private readonly keys: Collection<SigningKeyDoc>;
  private readonly records: Collection<TrustRecordDoc>;

  constructor(
    db: Db,
    private readonly secrets: SecretBox,
  ) {
    this.keys = db.collection<SigningKeyDoc>("signing_keys");
    this.records = db.collection<TrustRecordDoc>("trust_records");
  }

  static async createIndexes(db: Db): Promise<void> {
    await db.collection<TrustRecordDoc>("trust_records").createIndex({ tenantId: 1, seq: 1 });
  }

  private async chain(tenantId: string): Promise<TrustRecordDoc[]> {
    return this.records.find({ tenantId }).sort({ seq: 1 }).toArray();
  }

  private async keyDoc(tenantId: string, keyId: string): Promise<SigningKeyDoc | null> {
    return this.keys.findOne({ _id: `${tenantId}|${keyId}` });
  }

  /** The organization's keys that the chain names, newest first. */
  async list(tenantId: string): Promise<SigningKeyView[]> {
    const state = fold(await this.chain(tenantId));
    const docs = await Promise.all([...state.status.keys()].map((keyId) => this.keyDoc(tenantId, keyId)));
    return docs
      .filter((doc): doc is SigningKeyDoc => doc !== null)
      .map((doc) => {
        const entry = state.status.get(doc.keyId);
        return {
          keyId: doc.keyId,
          publicKey: doc.publicKey,
          status: entry?.status ?? "retired",
          createdAt: doc.createdAt.getTime(),
          createdBy: doc.createdBy,
          retiredAt: entry?.retiredAt?.getTime() ?? null,
        };
      })
      .sort((a, b) => b.createdAt - a.createdAt);
  }

  /** The records devices must apply, oldest first (record 0 is what they were provisioned with). */
  async trust(tenantId: string): Promise<SignedText[]> {
    const records = await this.chain(tenantId);
    return records.flatMap((record) => (record.signed ? [record.signed] : [])).slice(-MAX_TRUST_RECORDS);
  }

  /**
   * A new key. The organization's first becomes active at once (devices are provisioned with it);
   * any later one is a rotation: a trust record signed by the active key adds it and retires the old.
   */
  async createKey(tenantId: string, actor: string): Promise<{ key: SigningKeyView; record: SignedText | null }> {
    const state = fold(await this.chain(tenantId));
    if (state.lastSeq >= 0 && state.active === undefined)
      throw new Problem(409, "no_active_key", "the organization has keys but none is active; contact support");
    const generated = generateSigningKey();
    const now = new Date();
    await this.keys.insertOne({
      _id: `${tenantId}|${generated.keyId}`,
      tenantId,
      keyId: generated.keyId,
      publicKey: generated.publicKey,
      sealedPrivateKey: this.secrets.seal(generated.privateKeyPem),
      createdAt: now,
      createdBy: actor,
    });
    const seq = state.lastSeq + 1;
    const retire = state.active === undefined ? [] : [state.active];
    let signed: SignedText | undefined;
    if (state.active !== undefined) {
      const add: TrustKey[] = [{ keyId: generated.keyId, publicKey: generated.publicKey }];
      signed = await this.signRecord(tenantId, state.active, { seq, add, retire, issued: now.getTime() });
    }
    await this.insertRecord({
      _id: recordId(tenantId, seq),
      tenantId,
      seq,
      action: seq === 0 ? "genesis" : "rotate",
      add: [generated.keyId],
      retire,
      ...(signed ? { signed } : {}),
      createdAt: now,
      createdBy: actor,
    });
    const key: SigningKeyView = {
      keyId: generated.keyId,
      publicKey: generated.publicKey,
      status: "active",
      createdAt: now.getTime(),
      createdBy: actor,
      retiredAt: null,
    };
    return { key, record: signed ?? null };
  }

  /** Retires a key for good (compromised): a record signed by the active key tells devices to drop it. */
  async revoke(tenantId: string, keyId: string, actor: string): Promise<SignedText> {
    const state = fold(await this.chain(tenantId));
    const entry = state.status.get(keyId);
    if (!entry) throw new Problem(404, "signing_key_not_found", `no signing key ${keyId} in this organization`);
    if (state.active === keyId)
      throw new Problem(409, "key_active", "the active key cannot be revoked: create a new key first (rotation)");
    if (entry.status === "revoked") throw new Problem(409, "key_revoked", `signing key ${keyId} is revoked already`);
    const active = state.active as string;
    const now = new Date();
    const seq = state.lastSeq + 1;
    const signed = await this.signRecord(tenantId, active, { seq, add: [], retire: [keyId], issued: now.getTime() });
    await this.insertRecord({
      _id: recordId(tenantId, seq),
      tenantId,
      seq,
      action: "revoke",
      add: [],
      retire: [keyId],
      signed,
      createdAt: now,
      createdBy: actor,
    });
    return signed;
  }

  /**
   * What devices are built with (config otaKeys, "keyId:04…"): the organization's first key, made
   * now if it has none. Devices provisioned with it follow every rotation since through the records.
   */
  async provisioningKey(tenantId: string, actor: string): Promise<string> {
    let genesis = (await this.chain(tenantId))[0];
    if (!genesis) {
      await this.createKey(tenantId, actor);
      genesis = (await this.chain(tenantId))[0];
    }
    const keyId = genesis?.add[0] as string;
    const doc = await this.keyDoc(tenantId, keyId);
    if (!doc) throw new Error(`signing key ${keyId} of ${tenantId} is missing`);
    return `${doc.keyId}:${doc.publicKey}`;
  }

  /** The active key's id; 409 when the organization has none yet. */
  async activeKeyId(tenantId: string): Promise<string> {
    const active = fold(await this.chain(tenantId)).active;
    if (active === undefined)
      throw new Problem(409, "no_signing_key", "the organization has no signing key yet: create one first");
    return active;
  }

  /** Whether devices following the chain trust this key now. */
  async isTrusted(tenantId: string, keyId: string): Promise<boolean> {
    return fold(await this.chain(tenantId)).status.get(keyId)?.status === "active";
  }

  /** Signs text that names the signing key (built by `text(keyId)`) with the active key. */
  async sign(tenantId: string, text: (keyId: string) => string): Promise<{ keyId: string } & SignedText> {
    const keyId = await this.activeKeyId(tenantId);
    const body = text(keyId);
    return { keyId, text: body, sig: await this.signWith(tenantId, keyId, body) };
  }

  /** Checks a signature against one of the organization's keys, whatever its status. */
  async verify(tenantId: string, keyId: string, signed: SignedText): Promise<boolean> {
    const doc = await this.keyDoc(tenantId, keyId);
    return doc !== null && verifyText(doc.publicKey, signed.text, signed.sig);
  }

  private async signWith(tenantId: string, keyId: string, text: string): Promise<string> {
    const doc = await this.keyDoc(tenantId, keyId);
    if (!doc) throw new Error(`signing key ${keyId} of ${tenantId} is missing`);
    return signText(this.secrets.open(doc.sealedPrivateKey), text);
  }

  private async signRecord(
    tenantId: string,
    signer: string,
    change: { seq: number; add: TrustKey[]; retire: string[]; issued: number },
  ): Promise<SignedText> {
    const record: TrustRecord = {
      v: 1,
      type: "trust",
      seq: change.seq,
      add: change.add,
      retire: change.retire,
      keyId: signer,
      issued: change.issued,
    };
    const text = JSON.stringify(record);
    return { text, sig: await this.signWith(tenantId, signer, text) };
  }

  private async insertRecord(doc: TrustRecordDoc): Promise<void> {
    try {
      await this.records.insertOne(doc);
    } catch (error) {
      if ((error as { code?: number }).code === DUPLICATE_KEY)
        throw new Problem(409, "signing_conflict", "another key change happened at the same time; try again");
      throw error;
    }
  }
}
