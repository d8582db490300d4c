// An export worker (export-workers.ts): encodes one export at a time from its own connection to
// the database, and sends the chunks to its parent as the parent's credits allow.

import { parentPort, workerData } from "node:worker_threads";
import { MongoClient } from "mongodb";
import { CLIENT_DEADLINES } from "../storage/connect.ts";
import type { ExportTally } from "./export-format.ts";
import type { ExportJob, FromWorker, ToWorker, WorkerData } from "./export-workers.ts";
import { TelemetryExport } from "./telemetry-export.ts";

const { uri, dbName, window } = workerData as WorkerData;
const port = parentPort;
if (!port) throw new Error("export-worker.ts runs as a worker thread");

// The API's deadlines on every call (storage/connect.ts); one export at a time needs few connections.
const client = new MongoClient(uri, { ...CLIENT_DEADLINES, appName: "kestrel-export", maxPoolSize: 2 });
const exporter = new TelemetryExport(client.db(dbName));

let credits = 0;
let cancelled = false;
let wake: (() => void) | undefined;

function send(message: FromWorker, transfer: ArrayBuffer[] = []): void {
  port?.postMessage(message, transfer);
}

function resume(): void {
  wake?.();
  wake = undefined;
}

async function run(job: ExportJob): Promise<void> {
  credits = window;
  cancelled = false;
  const tally: ExportTally = { rows: 0, samples: 0, bytes: 0 };
  const chunks = exporter.encode(job.tenantId, job.scope, tally);
  try {
    for await (const bytes of chunks) {
      while (credits === 0 && !cancelled) await new Promise<void>((resolve) => (wake = resolve));
      if (cancelled) break;
      credits--;
      // Sent by moving its memory, not copying it: a buffer that owns all of its memory moves as
      // it is, one cut from a shared pool is copied first.
      const owned =
        bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength ? bytes : new Uint8Array(bytes);
      send({ type: "chunk", bytes: owned }, [owned.buffer as ArrayBuffer]);
    }
    if (!cancelled) send({ type: "end", tally });
  } catch (error) {
    if (!cancelled) send({ type: "error", message: (error as Error).message });
  } finally {
    send({ type: "done" });
  }
}

port.on("message", (message: ToWorker) => {
  if (message.type === "start") {
    void run(message.job);
  } else if (message.type === "more") {
    credits += message.credits;
    resume();
  } else {
    cancelled = true;
    resume();
  }
});
