// Which storage the embedded FerretDB runs on when MONGODB_URI is unset.

/** SQLite files, or a PostgreSQL cluster (Debian's server, run by our FerretDB program), in the data dir. */
export type EmbeddedBackend = "sqlite" | "postgresql";
export const EMBEDDED_BACKENDS: readonly EmbeddedBackend[] = ["sqlite", "postgresql"];
/** The embedded default, chosen by measurement (docs/benchmarks.md, "Embedded default"). */
export const DEFAULT_EMBEDDED_BACKEND: EmbeddedBackend = "sqlite";
