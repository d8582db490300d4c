// Inserts into one collection with one command in flight at a time: documents
// that arrive while it runs wait, and go together in the next command (a
// group commit). Each caller's promise settles when its own document is
// written (or its command failed).
//
// Why: on the embedded store (FerretDB on SQLite) every insert command is a
// transaction that needs the database's one write lock, and a transaction that
// finds it taken polls it again after sleeps of 1, 2, 5, 10 ... 100 ms. Ingest
// requests in flight at once each inserting their journal document made each
// other wait that way; one insert of several documents takes the lock once.

import { type Collection, type Document, MongoBulkWriteError, type OptionalUnlessRequiredId } from "mongodb";
import { INSERT_OR_DELETE_STATEMENTS } from "./command-bounds.ts";

interface Waiting<T> {
  doc: OptionalUnlessRequiredId<T>;
  resolve: () => void;
  reject: (error: unknown) => void;
}

export class GroupInsert<T extends Document> {
  private readonly waiting: Waiting<T>[] = [];
  private writing = false;

  constructor(private readonly collection: Collection<T>) {}

  /** Resolves once `doc` is written. */
  insert(doc: OptionalUnlessRequiredId<T>): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.waiting.push({ doc, resolve, reject });
      if (!this.writing) void this.writeAll();
    });
  }

  private async writeAll(): Promise<void> {
    this.writing = true;
    try {
      while (this.waiting.length > 0) {
        const group = this.waiting.splice(0, INSERT_OR_DELETE_STATEMENTS);
        try {
          await this.collection.insertMany(
            group.map(({ doc }) => doc),
            { ordered: false },
          );
          for (const { resolve } of group) resolve();
        } catch (error) {
          // Unordered: when the server names the documents it refused, the others were written; any
          // other failure (no answer, a write concern error) leaves every document's fate unknown.
          const refused =
            error instanceof MongoBulkWriteError
              ? new Set([error.writeErrors].flat().map(({ index }) => index))
              : new Set<number>();
          for (const [index, { resolve, reject }] of group.entries()) {
            if (refused.size > 0 && !refused.has(index)) resolve();
            else reject(error);
          }
        }
      }
    } finally {
      this.writing = false;
    }
  }
}
