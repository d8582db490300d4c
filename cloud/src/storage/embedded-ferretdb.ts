// Runs the project-local FerretDB binary (MongoDB wire protocol on SQLite, or on
// Debian's PostgreSQL, which the binary then runs too) as a child process on a
// free loopback port: the embedded store for development and tests when
// MONGODB_URI is not set.

import { spawn } from "node:child_process";
import { access, chmod, constants, mkdir, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { createInterface } from "node:readline";
import type { Logger } from "pino";
import { REPO_ROOT } from "../config.ts";
import { DEFAULT_EMBEDDED_BACKEND, type EmbeddedBackend } from "./embedded-backend.ts";

export interface EmbeddedFerretDbOptions {
  dataDir: string;
  /** Default DEFAULT_EMBEDDED_BACKEND. Both keep their data in `dataDir`, side by side. */
  backend?: EmbeddedBackend;
  /** Defaults to `<repo>/.local/bin/ferretdb`, built by `make setup`. */
  binary?: string;
  /** Receives FerretDB's own log lines (stderr) at debug level. */
  logger?: Logger;
  startTimeoutMs?: number;
  stopTimeoutMs?: number;
}

export interface EmbeddedFerretDb {
  uri: string;
  /** The FerretDB process: tests stop and resume it to play a stalled database, benchmarks read its CPU time. */
  pid: number;
  stop(): Promise<void>;
  /** Ends the process at once (SIGKILL), stopped or wedged: for a shutdown out of time. */
  kill(): void;
}

export class EmbeddedFerretDbError extends Error {
  constructor(
    readonly code: "ferretdb_missing" | "ferretdb_start_failed",
    message: string,
  ) {
    super(message);
  }
}

/**
 * Run as root, our FerretDB program runs PostgreSQL as the postgres user, who must be able to reach
 * the data dir. Temporary directories (mkdtemp: 0700, as tests and benchmarks make them) get the
 * traverse bit here; any other directory in the way is reported by the program, not changed.
 */
async function letPostgresReach(dataDir: string): Promise<void> {
  if (process.getuid?.() !== 0) return;
  const temp = resolve(tmpdir());
  for (let dir = dirname(resolve(dataDir)); dir.startsWith(`${temp}/`); dir = dirname(dir)) {
    const { mode } = await stat(dir);
    if ((mode & 0o001) === 0) await chmod(dir, (mode & 0o777) | 0o011);
  }
}

const URI_LINE = /^MONGODB_URI=(mongodb:\/\/\S+)$/;
// Kept so a failed start can say why.
const STDERR_TAIL_LINES = 20;

export async function startEmbeddedFerretDb(options: EmbeddedFerretDbOptions): Promise<EmbeddedFerretDb> {
  const binary = options.binary ?? join(REPO_ROOT, ".local", "bin", "ferretdb");
  const backend = options.backend ?? DEFAULT_EMBEDDED_BACKEND;
  // PostgreSQL's first start makes its cluster (initdb): seconds, more on a loaded machine.
  const startTimeoutMs = options.startTimeoutMs ?? (backend === "postgresql" ? 60_000 : 15_000);
  const stopTimeoutMs = options.stopTimeoutMs ?? 3_000;
  try {
    await access(binary, constants.X_OK);
  } catch {
    throw new EmbeddedFerretDbError(
      "ferretdb_missing",
      `FerretDB binary not found or not executable at ${binary}: run \`make setup\` (or set MONGODB_URI)`,
    );
  }
  await mkdir(options.dataDir, { recursive: true });
  if (backend === "postgresql") await letPostgresReach(options.dataDir);

  const child = spawn(binary, ["-listen", "127.0.0.1:0", "-data", options.dataDir, "-backend", backend], {
    stdio: ["ignore", "pipe", "pipe"],
    // Its own process group: a terminal's Ctrl-C reaches only us, and we stop FerretDB last, after
    // the services that still write to it. FerretDB exits by itself if this process dies.
    detached: true,
  });
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  const running = () => child.pid !== undefined && child.exitCode === null && child.signalCode === null;
  const kill = () => {
    if (running()) child.kill("SIGKILL");
  };
  // If this process ends without stop() (process.exit, an uncaught error), FerretDB must not outlive
  // it: SIGKILL, which also ends a stopped process (a SIGTERM would wait for it to be resumed, and a
  // FerretDB left behind keeps the data dir locked for the next start). SQLite recovers from it.
  const stopOnExit = kill;
  process.once("exit", stopOnExit);
  child.once("exit", () => process.off("exit", stopOnExit));
  const stderrTail: string[] = [];
  createInterface({ input: child.stderr }).on("line", (line) => {
    stderrTail.push(line);
    if (stderrTail.length > STDERR_TAIL_LINES) stderrTail.shift();
    options.logger?.debug({ ferretdb: line }, "ferretdb");
  });

  const stop = async (): Promise<void> => {
    // No pid: the spawn itself failed, there is nothing to stop.
    if (!running()) return;
    child.kill("SIGTERM");
    // A stopped process (SIGSTOP, a debugger) handles the SIGTERM only once resumed.
    child.kill("SIGCONT");
    const timer = setTimeout(kill, stopTimeoutMs);
    await exited;
    clearTimeout(timer);
  };

  const uri = await new Promise<string>((resolve, reject) => {
    const fail = (reason: string) => {
      clearTimeout(timer);
      const tail = stderrTail.length > 0 ? `\n${stderrTail.join("\n")}` : "";
      reject(new EmbeddedFerretDbError("ferretdb_start_failed", `FerretDB (${binary}) ${reason}${tail}`));
    };
    const timer = setTimeout(() => fail(`printed no MONGODB_URI within ${startTimeoutMs} ms`), startTimeoutMs);
    child.once("error", (error) => fail(`could not start: ${error.message}`));
    child.once("exit", (code, signal) => fail(`exited during start-up (code ${code}, signal ${signal})`));
    createInterface({ input: child.stdout }).on("line", (line) => {
      const match = URI_LINE.exec(line.trim());
      if (!match?.[1]) return;
      clearTimeout(timer);
      resolve(match[1]);
    });
  }).catch(async (error: unknown) => {
    await stop();
    throw error;
  });

  let stopping = false;
  child.once("exit", (code, signal) => {
    if (!stopping) options.logger?.error({ code, signal, stderr: stderrTail }, "embedded FerretDB exited unexpectedly");
  });
  return {
    uri,
    pid: child.pid as number,
    stop: () => {
      stopping = true;
      return stop();
    },
    kill: () => {
      stopping = true;
      kill();
    },
  };
}
