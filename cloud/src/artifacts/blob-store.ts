// Where artifact bytes live, behind one small interface: MongoDB's GridFS by default (the same
// database, nothing else to run), object storage could implement the same four calls. On FerretDB
// v1 a GridFS read filters the chunks collection on files_id, which it answers by a scan; that is one
// query per read, and gateways read each artifact once (they cache it), so it stays cheap.

import { Readable, type Writable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { type Db, GridFSBucket, ObjectId } from "mongodb";

export interface StoredBlob {
  /** Opaque to callers: what read() and remove() take. */
  ref: string;
}

export interface ArtifactBlobStore {
  /**
   * Stores what `source` yields. If it throws (the upload was refused or cut), nothing stays
   * stored and the error is passed on.
   */
  write(tenantId: string, filename: string, source: AsyncIterable<Uint8Array>): Promise<StoredBlob>;
  /** Bytes [start, end) of a stored blob, or all of it. */
  read(ref: string, range?: { start: number; end: number }): Readable;
  remove(ref: string): Promise<void>;
}

const BUCKET = "artifact_blobs";

export class GridFsBlobStore implements ArtifactBlobStore {
  private readonly bucket: GridFSBucket;

  constructor(db: Db) {
    this.bucket = new GridFSBucket(db, { bucketName: BUCKET });
  }

  async write(tenantId: string, filename: string, source: AsyncIterable<Uint8Array>): Promise<StoredBlob> {
    const upload = this.bucket.openUploadStream(filename, { metadata: { tenantId } });
    try {
      await pipeline(Readable.from(source), upload as Writable);
    } catch (error) {
      // Removes the chunks written so far; the file document is written only at the end.
      await upload.abort().catch(() => undefined);
      throw error;
    }
    return { ref: upload.id.toHexString() };
  }

  read(ref: string, range?: { start: number; end: number }): Readable {
    return this.bucket.openDownloadStream(new ObjectId(ref), range);
  }

  async remove(ref: string): Promise<void> {
    await this.bucket.delete(new ObjectId(ref));
  }
}
