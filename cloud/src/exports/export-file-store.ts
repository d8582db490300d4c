// Stored exports for download, in MongoDB: chunks of about CHUNK_BYTES, `_id = <runId>:<n>`, so
// writing and reading back are point operations by `_id` (GridFS would filter on files_id, which
// FerretDB answers by scanning). Memory holds one chunk either way.

import { Readable, Writable } from "node:stream";
import { Binary, type Collection, type Db } from "mongodb";

// Below MongoDB's 16 MB document limit by far; as GridFS.
const CHUNK_BYTES = 255 * 1024;

interface ChunkDoc {
  _id: string;
  tenantId: string;
  data: Binary;
}

function chunkId(runId: string, n: number): string {
  return `${runId}:${n}`;
}

export class ExportFileStore {
  private readonly chunks: Collection<ChunkDoc>;

  constructor(db: Db) {
    this.chunks = db.collection<ChunkDoc>("export_files");
  }

  /**
   * A sink that stores what is written to it as the run's file; `chunks()` is the count once it
   * has finished. On failure, `discard(runId, count)` removes what was stored.
   */
  sink(tenantId: string, runId: string): Writable & { chunks(): number } {
    const store = this.chunks;
    let pending: Buffer[] = [];
    let size = 0;
    let n = 0;
    const flush = async () => {
      if (size === 0) return;
      const data = new Binary(Buffer.concat(pending, size));
      pending = [];
      size = 0;
      await store.insertOne({ _id: chunkId(runId, n), tenantId, data });
      n++;
    };
    const sink = new Writable({
      highWaterMark: CHUNK_BYTES,
      write(chunk: Buffer, _encoding, done) {
        pending.push(chunk);
        size += chunk.length;
        if (size < CHUNK_BYTES) return done();
        flush().then(() => done(), done);
      },
      final(done) {
        flush().then(() => done(), done);
      },
    });
    return Object.assign(sink, { chunks: () => n });
  }

  /** The stored file of a run with `count` chunks. */
  read(runId: string, count: number): Readable {
    const chunks = this.chunks;
    return Readable.from(
      (async function* () {
        for (let n = 0; n < count; n++) {
          const doc = await chunks.findOne({ _id: chunkId(runId, n) });
          if (!doc) throw new Error(`chunk ${n} of run ${runId} is missing`);
          yield Buffer.from(doc.data.buffer);
        }
      })(),
      { objectMode: false },
    );
  }

  async discard(runId: string, count: number): Promise<void> {
    const ids = Array.from({ length: count }, (_, n) => chunkId(runId, n));
    if (ids.length > 0) await this.chunks.deleteMany({ _id: { $in: ids } });
  }

  /** Removes what a lost attempt stored, its count unknown: chunks are written in order, so up to the first gap. */
  async discardAll(runId: string): Promise<void> {
    for (let n = 0; ; n++) {
      if ((await this.chunks.deleteOne({ _id: chunkId(runId, n) })).deletedCount === 0) return;
    }
  }
}
