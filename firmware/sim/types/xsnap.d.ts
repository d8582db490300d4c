// The part of @agoric/xsnap 0.15 (JavaScript with JSDoc, no declarations shipped) the simulator uses.

declare module "@agoric/xsnap" {
  import type { spawn } from "node:child_process";

  export interface XsnapMeterUsage {
    meterType: string;
    /** Computrons used by the last crank. */
    compute: number | null;
    allocate: number | null;
    /** Live heap slots (32 bytes each on a 64-bit host, 16 on the ESP32). */
    currentHeapCount: number | null;
    timestamps: number[] | null;
  }

  export interface XsnapResult<T> {
    reply: T;
    meterUsage: XsnapMeterUsage;
  }

  export interface XsnapOptions {
    os: string;
    spawn: typeof spawn;
    /** Only used for snapshots, which the simulator does not take. */
    fs: object;
    handleCommand?: (request: Uint8Array) => Promise<Uint8Array>;
    name?: string;
    stdout?: "ignore" | "inherit" | "pipe";
    stderr?: "ignore" | "inherit" | "pipe";
    /** Computrons per crank before the worker is stopped. */
    meteringLimit?: number;
  }

  export interface XsnapWorker {
    readonly name: string;
    evaluate(code: string): Promise<XsnapResult<Uint8Array>>;
    issueStringCommand(message: string): Promise<XsnapResult<string>>;
    close(): Promise<void>;
    terminate(): Promise<void>;
  }

  export function xsnap(options: XsnapOptions): Promise<XsnapWorker>;
}
