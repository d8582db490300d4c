// The parent side of an xsnap worker: the XS engine process that runs one simulated device. It
// speaks xsnap's protocol (netstrings on fds 3 and 4): `e<code>` evaluates, `?<bytes>` delivers a
// command to the worker's handleCommand, `q` quits; the worker answers `.<meters>\x01<reply>`,
// `!<error>`, or asks the parent `?<bytes>` (its synchronous issueCommand) and waits for `/<reply>`.
// Ours rather than @agoric/xsnap's own driver, whose modules need HardenedJS globals in the host
// process and whose packages declare engines only up to Node 22; the worker binary is built from
// that package's sources (engine/xs-engine.json, tools/scripts/xs-engine.sh).

import { type ChildProcess, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import type { Readable, Writable } from "node:stream";

export interface XsnapMeterUsage {
  /** Computrons used by the last crank. */
  compute: number | null;
  /** Bytes the engine has taken from the host for its heaps (only grows). */
  allocate: number | null;
  /** Heap slots in use (32 bytes each on a 64-bit host, 16 on the ESP32). */
  currentHeapCount: number | null;
}

export interface XsnapResult<T> {
  reply: T;
  meterUsage: XsnapMeterUsage;
}

export interface XsnapWorkerOptions {
  name: string;
  /** Answers the worker's synchronous issueCommand calls. */
  handleCommand: (request: Uint8Array) => Promise<Uint8Array> | Uint8Array;
  /** Computrons per crank before the worker stops itself ("too much computation"). */
  meteringLimit: number;
  /** Its own process group, so a terminal's Ctrl-C does not kill every device's engine at once. */
  detached?: boolean;
  stdout?: "ignore" | "inherit";
  stderr?: "ignore" | "inherit";
  /** Another worker binary built from the same sources (one with native modules linked in). */
  binary?: string;
}

/** xsnap-worker's exit codes (its api.js). */
const EXIT_MESSAGES: Readonly<Record<number, string>> = Object.freeze({
  1: "bad argument usage",
  2: "I/O error",
  11: "not enough memory",
  12: "stack overflow",
  15: "unhandled exception",
  16: "property (key) name space exhausted",
  17: "too much computation",
});

const OK = 0x2e; // "."
const ERROR = 0x21; // "!"
const QUERY = 0x3f; // "?"
const METER_SEPARATOR = 0x01;
const COLON = 0x3a;
const COMMA = 0x2c;

const encoder = new TextEncoder();
const decoder = new TextDecoder();

const REPO_ROOT = join(import.meta.dirname, "..", "..", "..");

/**
 * The worker every simulated device runs, or KESTREL_XS_WORKER: the stock xsnap-worker's objects
 * linked with our native modules (the wasm3 plugin host), built by tools/scripts/kestrel-worker.sh.
 */
export function defaultWorkerBinary(): string {
  const override = process.env.KESTREL_XS_WORKER;
  if (override) return override;
  const binary = join(REPO_ROOT, ".local", "xs", "kestrel-worker", "kestrel-xsnap-worker");
  if (!existsSync(binary)) throw new Error(`the XS worker is not built (${binary}): run 'make setup'`);
  return binary;
}

/** Splits netstrings (`<length>:<bytes>,`) out of a byte stream. */
class NetstringReader {
  #buffer: Buffer = Buffer.alloc(0);
  readonly #messages: Buffer[] = [];
  #waiting: ((message: Buffer | undefined) => void) | undefined;
  #ended = false;
  #error: Error | undefined;

  constructor(stream: Readable) {
    stream.on("data", (chunk: Buffer) => this.#push(chunk));
    stream.on("end", () => this.#finish());
    stream.on("close", () => this.#finish());
    stream.on("error", () => this.#finish());
  }

  /** The next message, or undefined once the stream has ended. */
  next(): Promise<Buffer | undefined> {
    if (this.#error) return Promise.reject(this.#error);
    const message = this.#messages.shift();
    if (message || this.#ended) return Promise.resolve(message);
    return new Promise((resolve) => {
      this.#waiting = resolve;
    });
  }

  #push(chunk: Buffer): void {
    this.#buffer = this.#buffer.length === 0 ? chunk : Buffer.concat([this.#buffer, chunk]);
    for (;;) {
      const colon = this.#buffer.indexOf(COLON);
      if (colon < 0) break;
      const length = Number(this.#buffer.subarray(0, colon).toString("latin1"));
      if (!Number.isSafeInteger(length) || colon === 0) {
        this.#error = new Error("xsnap protocol error: bad netstring length");
        this.#finish();
        return;
      }
      const end = colon + 1 + length;
      if (this.#buffer.length < end + 1) break;
      if (this.#buffer[end] !== COMMA) {
        this.#error = new Error("xsnap protocol error: netstring without its comma");
        this.#finish();
        return;
      }
      this.#deliver(this.#buffer.subarray(colon + 1, end));
      this.#buffer = this.#buffer.subarray(end + 1);
    }
  }

  #deliver(message: Buffer): void {
    const waiting = this.#waiting;
    if (waiting) {
      this.#waiting = undefined;
      waiting(message);
    } else this.#messages.push(message);
  }

  #finish(): void {
    this.#ended = true;
    const waiting = this.#waiting;
    this.#waiting = undefined;
    waiting?.(undefined);
  }
}

function netstring(...parts: Uint8Array[]): Buffer {
  const length = parts.reduce((sum, part) => sum + part.byteLength, 0);
  return Buffer.concat([Buffer.from(`${length}:`, "latin1"), ...parts, Buffer.from(",", "latin1")]);
}

function parseMeters(bytes: Uint8Array): XsnapMeterUsage {
  const parsed = JSON.parse(decoder.decode(bytes)) as Partial<XsnapMeterUsage>;
  return {
    compute: parsed.compute ?? null,
    allocate: parsed.allocate ?? null,
    currentHeapCount: parsed.currentHeapCount ?? null,
  };
}

export class XsnapWorker {
  readonly name: string;
  readonly #process: ChildProcess;
  readonly #toWorker: Writable;
  readonly #fromWorker: NetstringReader;
  readonly #handleCommand: XsnapWorkerOptions["handleCommand"];
  readonly #exited: Promise<void>;
  /** One exchange at a time: the protocol has no request ids. */
  #baton: Promise<unknown> = Promise.resolve();
  #exitError: Error | undefined;
  #closing = false;

  private constructor(options: XsnapWorkerOptions) {
    this.name = options.name;
    this.#handleCommand = options.handleCommand;
    if (options.name.startsWith("-")) throw new Error(`worker name '${options.name}' cannot start with a hyphen`);
    this.#process = spawn(
      options.binary ?? defaultWorkerBinary(),
      [options.name, "-l", String(options.meteringLimit)],
      {
        detached: options.detached ?? false,
        stdio: ["ignore", options.stdout ?? "ignore", options.stderr ?? "inherit", "pipe", "pipe"],
      },
    );
    const stdio = this.#process.stdio;
    this.#toWorker = stdio[3] as Writable;
    this.#toWorker.on("error", () => undefined);
    this.#fromWorker = new NetstringReader(stdio[4] as Readable);
    this.#exited = new Promise((resolve) => {
      this.#process.once("error", (error) => {
        this.#exitError = error;
        resolve();
      });
      this.#process.once("exit", (code, signal) => {
        if (code !== 0 && !this.#closing)
          this.#exitError = new Error(
            signal !== null
              ? `${this.name} exited due to signal ${signal}`
              : `${this.name} exited: ${EXIT_MESSAGES[code ?? -1] ?? "unknown error"}`,
          );
        resolve();
      });
    });
  }

  static async start(options: XsnapWorkerOptions): Promise<XsnapWorker> {
    const worker = new XsnapWorker(options);
    await new Promise<void>((resolve, reject) => {
      worker.#process.once("spawn", resolve);
      worker.#process.once("error", reject);
    });
    return worker;
  }

  evaluate(code: string): Promise<XsnapResult<Uint8Array>> {
    return this.#exchange(netstring(encoder.encode(`e${code}`)));
  }

  async issueStringCommand(message: string): Promise<XsnapResult<string>> {
    const result = await this.#exchange(netstring(Uint8Array.of(QUERY), encoder.encode(message)));
    return { reply: decoder.decode(result.reply), meterUsage: result.meterUsage };
  }

  /** Asks the worker to quit once the exchange in progress is over; resolves when it has exited. */
  async close(): Promise<void> {
    await this.#baton.catch(() => undefined);
    this.#closing = true;
    if (this.#process.exitCode === null && this.#process.signalCode === null) {
      this.#toWorker.write(netstring(encoder.encode("q")));
      this.#toWorker.end();
    }
    await this.#exited;
  }

  /** Kills the worker where it stands. */
  async terminate(): Promise<void> {
    this.#closing = true;
    this.#process.kill("SIGKILL");
    await this.#exited;
  }

  #exchange(request: Buffer): Promise<XsnapResult<Uint8Array>> {
    const result = this.#baton.catch(() => undefined).then(() => this.#run(request));
    this.#baton = result;
    return result;
  }

  async #run(request: Buffer): Promise<XsnapResult<Uint8Array>> {
    if (this.#closing) throw new Error(`${this.name} closed`);
    this.#toWorker.write(request);
    for (;;) {
      const message = await Promise.race([this.#fromWorker.next(), this.#exited.then(() => undefined)]);
      if (message === undefined) {
        await this.#exited;
        throw this.#exitError ?? new Error(`${this.name} exited`);
      }
      if (message.length === 0) {
        this.#process.kill("SIGKILL");
        throw new Error("xsnap protocol error: empty message");
      }
      switch (message[0]) {
        case OK: {
          const separator = message.indexOf(METER_SEPARATOR, 1);
          return separator < 0
            ? { reply: message.subarray(1), meterUsage: { compute: null, allocate: null, currentHeapCount: null } }
            : { reply: message.subarray(separator + 1), meterUsage: parseMeters(message.subarray(1, separator)) };
        }
        case ERROR:
          throw new Error(`Uncaught exception in ${this.name}: ${decoder.decode(message.subarray(1))}`);
        case QUERY: {
          const answer = await this.#handleCommand(message.subarray(1));
          this.#toWorker.write(netstring(encoder.encode("/"), answer));
          break;
        }
        default:
          this.#process.kill("SIGKILL");
          throw new Error(`xsnap protocol error: unknown message <<${decoder.decode(message.subarray(0, 40))}>>`);
      }
    }
  }
}
