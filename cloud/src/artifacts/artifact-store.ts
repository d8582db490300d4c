// The artifact registry: what each uploaded artifact is (kind, name, semver, hardware target), its
// size and SHA-256, who uploaded it, where its bytes are (blob-store.ts) and its signed manifests.
// (organization, kind, name, version) is unique: a version, once uploaded, never changes.

import { randomBytes } from "node:crypto";
import type { ArtifactIdentity, ArtifactKind, ArtifactManifest, SignedText } from "@kestrel/wire/artifacts";
import { type Collection, type Db, MongoServerError } from "mongodb";

export interface ArtifactSignature extends SignedText {
  keyId: string;
  signedAt: Date;
  signedBy: string;
}

/** An artifact as the registry describes it, stored or answered. */
export interface ArtifactRecord extends ArtifactIdentity {
  artifactId: string;
  notes: string;
  /** What the content says beyond the declared fields (e.g. the image's project name). */
  details: Record<string, string>;
  createdBy: string;
}

export interface ArtifactDoc extends ArtifactRecord {
  _id: string;
  tenantId: string;
  blob: string;
  createdAt: Date;
  signatures: ArtifactSignature[];
}

export const MAX_ARTIFACTS_LISTED = 200;
const DUPLICATE_KEY = 11000;

export function artifactDocId(tenantId: string, artifactId: string): string {
  return `${tenantId}|${artifactId}`;
}

/** 16 random bytes, base64url (22 characters), prefixed so an id says what it names. */
export function newArtifactId(): string {
  return `art_${randomBytes(16).toString("base64url")}`;
}

/** The statement the organization's key signs for an artifact: canonical field order, no spaces. */
export function manifestText(doc: ArtifactDoc, keyId: string, issued: number): string {
  const manifest: ArtifactManifest = {
    v: 1,
    artifact: doc.artifactId,
    kind: doc.kind,
    name: doc.name,
    version: doc.version,
    target: { chip: doc.target.chip, board: doc.target.board },
    size: doc.size,
    sha256: doc.sha256,
    keyId,
    issued,
  };
  return JSON.stringify(manifest);
}

export class ArtifactStore {
  private readonly artifacts: Collection<ArtifactDoc>;

  constructor(db: Db) {
    this.artifacts = db.collection<ArtifactDoc>("artifacts");
  }

  static async createIndexes(db: Db): Promise<void> {
    const artifacts = db.collection<ArtifactDoc>("artifacts");
    await artifacts.createIndex({ tenantId: 1, kind: 1, name: 1, version: 1 }, { unique: true });
    await artifacts.createIndex({ tenantId: 1, sha256: 1 });
    await artifacts.createIndex({ tenantId: 1, createdAt: -1 });
  }

  /** False when the organization has this kind, name and version already. */
  async insert(doc: ArtifactDoc): Promise<boolean> {
    try {
      await this.artifacts.insertOne(doc);
      return true;
    } catch (error) {
      if (error instanceof MongoServerError && error.code === DUPLICATE_KEY) return false;
      throw error;
    }
  }

  async exists(tenantId: string, kind: ArtifactKind, name: string, version: string): Promise<boolean> {
    return (await this.artifacts.findOne({ tenantId, kind, name, version }, { projection: { _id: 1 } })) !== null;
  }

  find(tenantId: string, artifactId: string): Promise<ArtifactDoc | null> {
    return this.artifacts.findOne({ _id: artifactDocId(tenantId, artifactId) });
  }

  findBySha256(tenantId: string, sha256: string): Promise<ArtifactDoc | null> {
    return this.artifacts.findOne({ tenantId, sha256 });
  }

  list(tenantId: string, filter: { kind?: ArtifactKind; name?: string }, limit: number): Promise<ArtifactDoc[]> {
    return this.artifacts
      .find({ tenantId, ...filter })
      .sort({ createdAt: -1 })
      .limit(Math.min(limit, MAX_ARTIFACTS_LISTED))
      .toArray();
  }

  async addSignature(tenantId: string, artifactId: string, signature: ArtifactSignature): Promise<void> {
    await this.artifacts.updateOne({ _id: artifactDocId(tenantId, artifactId) }, { $push: { signatures: signature } });
  }

  async remove(tenantId: string, artifactId: string): Promise<void> {
    await this.artifacts.deleteOne({ _id: artifactDocId(tenantId, artifactId) });
  }
}
