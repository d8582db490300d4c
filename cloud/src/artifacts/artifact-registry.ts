// The registry's operations, shared by the artifact routes and the OTA campaigns: streamed upload
// checked by the kind's validator (refused uploads leave nothing stored), signing of manifests with
// the organization's active key, and reading the bytes back.

import { createHash } from "node:crypto";
import type { Readable } from "node:stream";
import type { ArtifactKind, ArtifactTarget, SignedText } from "@kestrel/wire/artifacts";
import type { Db } from "mongodb";
import type { SecretBox } from "../auth/secret-box.ts";
import { Problem } from "../http/problem.ts";
import { SigningService } from "../signing/signing-service.ts";
import {
  type ArtifactDoc,
  type ArtifactSignature,
  ArtifactStore,
  artifactDocId,
  manifestText,
  newArtifactId,
} from "./artifact-store.ts";
import { type ArtifactBlobStore, GridFsBlobStore } from "./blob-store.ts";
import { VALIDATORS } from "./validators.ts";

export interface UploadRequest {
  kind: ArtifactKind;
  name: string;
  /** Taken from the content when the kind's content states it (a firmware image does). */
  version: string | undefined;
  target: ArtifactTarget;
  notes: string;
  createdBy: string;
  /** Declared size (Content-Length), checked against the limit before anything is read. */
  declaredBytes: number | undefined;
}

export class ArtifactRegistry {
  readonly store: ArtifactStore;
  readonly signing: SigningService;
  private readonly blobs: ArtifactBlobStore;

  constructor(
    db: Db,
    secrets: SecretBox,
    private readonly maxBytes: number,
    blobs?: ArtifactBlobStore,
  ) {
    this.store = new ArtifactStore(db);
    this.signing = new SigningService(db, secrets);
    this.blobs = blobs ?? new GridFsBlobStore(db);
  }

  /** Stores the artifact if its content passes its kind's validator; otherwise throws and keeps nothing. */
  async upload(tenantId: string, request: UploadRequest, body: AsyncIterable<Uint8Array>): Promise<ArtifactDoc> {
    const { kind, name, target } = request;
    const validator = VALIDATORS.get(kind);
    if (!validator) throw new Problem(422, "unsupported_kind", `artifacts of kind ${kind} cannot be uploaded yet`);
    if (request.declaredBytes !== undefined && request.declaredBytes > this.maxBytes)
      throw new Problem(413, "payload_too_large", `an artifact is at most ${this.maxBytes} bytes`);
    if (request.version !== undefined && (await this.store.exists(tenantId, kind, name, request.version)))
      throw new Problem(409, "artifact_exists", `${kind} ${name} ${request.version} exists already`);

    const check = validator.begin({ kind, name, version: request.version, target });
    const hash = createHash("sha256");
    let size = 0;
    const maxBytes = this.maxBytes;
    async function* checked(): AsyncGenerator<Uint8Array> {
      for await (const chunk of body) {
        size += chunk.length;
        if (size > maxBytes) throw new Problem(413, "payload_too_large", `an artifact is at most ${maxBytes} bytes`);
        const error = check.write(chunk);
        if (error) throw new Problem(422, "invalid_artifact", `${error.code}: ${error.message}`);
        hash.update(chunk);
        yield chunk;
      }
      if (size === 0) throw new Problem(422, "invalid_artifact", "empty: the request body holds no artifact");
    }
    const artifactId = newArtifactId();
    const blob = await this.blobs.write(tenantId, artifactId, checked());
    const result = check.end();
    if (!result.ok) {
      await this.blobs.remove(blob.ref);
      throw new Problem(422, "invalid_artifact", `${result.error.code}: ${result.error.message}`);
    }
    const doc: ArtifactDoc = {
      _id: artifactDocId(tenantId, artifactId),
      tenantId,
      artifactId,
      kind,
      name,
      version: result.version,
      target,
      size,
      sha256: hash.digest("hex"),
      notes: request.notes,
      details: result.details,
      blob: blob.ref,
      createdBy: request.createdBy,
      createdAt: new Date(),
      signatures: [],
    };
    if (!(await this.store.insert(doc))) {
      await this.blobs.remove(blob.ref);
      throw new Problem(409, "artifact_exists", `${kind} ${name} ${result.version} exists already`);
    }
    return doc;
  }

  async require(tenantId: string, artifactId: string): Promise<ArtifactDoc> {
    const doc = await this.store.find(tenantId, artifactId);
    if (!doc) throw new Problem(404, "artifact_not_found", `no artifact ${artifactId} in this organization`);
    return doc;
  }

  /**
   * The artifact's manifest signed by the organization's active key: the one made before if there
   * is one (created false), else a new signature.
   */
  async sign(doc: ArtifactDoc, actor: string): Promise<{ signature: ArtifactSignature; created: boolean }> {
    const activeKeyId = await this.signing.activeKeyId(doc.tenantId);
    const existing = [...doc.signatures].reverse().find((signature) => signature.keyId === activeKeyId);
    if (existing) return { signature: existing, created: false };
    const issued = Date.now();
    const signed = await this.signing.sign(doc.tenantId, (keyId) => manifestText(doc, keyId, issued));
    const signature: ArtifactSignature = { ...signed, signedAt: new Date(issued), signedBy: actor };
    await this.store.addSignature(doc.tenantId, doc.artifactId, signature);
    doc.signatures.push(signature);
    return { signature, created: true };
  }

  /** The active key's signature, made now if the artifact was signed only by keys since rotated out. */
  async manifestFor(doc: ArtifactDoc): Promise<SignedText> {
    const { signature } = await this.sign(doc, "rotation");
    return { text: signature.text, sig: signature.sig };
  }

  read(doc: ArtifactDoc, range?: { start: number; end: number }): Readable {
    return this.blobs.read(doc.blob, range);
  }

  async remove(doc: ArtifactDoc): Promise<void> {
    await this.store.remove(doc.tenantId, doc.artifactId);
    await this.blobs.remove(doc.blob);
  }
}
