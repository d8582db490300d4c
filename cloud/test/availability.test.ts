// Every driver error that means "the database did not answer (in time)" is 503 database_unavailable,
// never a 500: one check per class the driver raises for a stalled or stopping server, the real
// WaitQueueTimeoutError from a stopped FerretDB (the 500 seen at the start of a SIGSTOP stall), and
// the errors that are the request's fault staying what they are.

import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import Fastify from "fastify";
import {
  MongoClient,
  MongoClientClosedError,
  MongoDecompressionError,
  MongoInvalidArgumentError,
  MongoNetworkError,
  MongoNetworkTimeoutError,
  MongoNotConnectedError,
  MongoOperationTimeoutError,
  MongoRuntimeError,
  MongoServerClosedError,
  MongoServerError,
  MongoServerSelectionError,
  MongoTopologyClosedError,
  MongoUnexpectedServerResponseError,
} from "mongodb";
import { problemDetailsPlugin, problemServerOptions } from "../src/http/problem.ts";
import { isDatabaseUnavailable } from "../src/storage/availability.ts";
import { type EmbeddedFerretDb, startEmbeddedFerretDb } from "../src/storage/embedded-ferretdb.ts";

/** The connection-pool errors the driver does not export, loaded from the driver itself. */
type PoolErrorClass = new (...args: never[]) => Error;
const poolErrors = createRequire(import.meta.url)("mongodb/lib/cmap/errors.js") as Record<
  "WaitQueueTimeoutError" | "PoolClearedError" | "PoolClearedOnNetworkError" | "PoolClosedError",
  PoolErrorClass
>;
const pool = { address: "127.0.0.1:27017", serverError: new MongoNetworkTimeoutError("timed out") };
const construct = (errorClass: PoolErrorClass, ...args: unknown[]) =>
  new (errorClass as new (...rest: unknown[]) => Error)(...args);

/** A server's error answer, as the driver builds it from the reply. */
const serverError = (code: number, codeName: string, errmsg: string) =>
  new MongoServerError({ ok: 0, code, codeName, errmsg });

/** A real MongoServerSelectionError: a client pointed at a port nothing listens on. */
async function serverSelectionError(): Promise<unknown> {
  const client = new MongoClient("mongodb://127.0.0.1:9/", { serverSelectionTimeoutMS: 100, connectTimeoutMS: 100 });
  try {
    await client.db("x").command({ ping: 1 });
    return undefined;
  } catch (error) {
    return error;
  } finally {
    await client.close(true);
  }
}

const UNAVAILABLE: Array<[string, () => unknown]> = [
  ["MongoNetworkTimeoutError", () => new MongoNetworkTimeoutError("connection 3 to 127.0.0.1:27017 timed out")],
  ["MongoNetworkError", () => new MongoNetworkError("connection 3 to 127.0.0.1:27017 closed")],
  ["MongoWaitQueueTimeoutError", () => construct(poolErrors.WaitQueueTimeoutError, "Timed out", pool.address)],
  ["MongoPoolClearedError", () => construct(poolErrors.PoolClearedError, pool)],
  ["PoolClearedOnNetworkError", () => construct(poolErrors.PoolClearedOnNetworkError, pool)],
  ["MongoPoolClosedError", () => construct(poolErrors.PoolClosedError, pool)],
  ["MongoTopologyClosedError", () => new MongoTopologyClosedError()],
  ["MongoClientClosedError", () => new MongoClientClosedError()],
  ["MongoServerClosedError", () => new MongoServerClosedError()],
  ["MongoNotConnectedError", () => new MongoNotConnectedError("client must be connected")],
  ["MongoOperationTimeoutError", () => new MongoOperationTimeoutError("Timed out during operation")],
  ["MongoRuntimeError", () => new MongoRuntimeError("Unable to iterate cursor with no id")],
  ["MongoUnexpectedServerResponseError", () => new MongoUnexpectedServerResponseError("cut off")],
  ["MongoDecompressionError", () => new MongoDecompressionError("bad frame")],
  ["operation was interrupted (11601)", () => serverError(11601, "Interrupted", "operation was interrupted")],
  ["interrupted at shutdown (11600)", () => serverError(11600, "InterruptedAtShutdown", "interrupted at shutdown")],
  ["MaxTimeMSExpired (50)", () => serverError(50, "MaxTimeMSExpired", "operation exceeded time limit")],
  ["ExceededTimeLimit (262)", () => serverError(262, "ExceededTimeLimit", "operation exceeded time limit")],
  ["ShutdownInProgress (91)", () => serverError(91, "ShutdownInProgress", "shutdown in progress")],
  ["NotWritablePrimary (10107)", () => serverError(10107, "NotWritablePrimary", "not primary")],
  ["operation was interrupted, no code", () => new MongoServerError({ ok: 0, errmsg: "operation was interrupted" })],
  ["a driver error as the cause", () => new Error("reading devices failed", { cause: new MongoNetworkError("x") })],
];

const REQUEST_ERRORS: Array<[string, () => unknown]> = [
  ["duplicate key (11000)", () => serverError(11000, "DuplicateKey", "E11000 duplicate key error")],
  ["BadValue (2), whatever its message says", () => serverError(2, "BadValue", "operation was interrupted")],
  ["MongoInvalidArgumentError", () => new MongoInvalidArgumentError("bad option")],
  ["a plain Error", () => new Error("operation was interrupted")],
  ["a TypeError", () => new TypeError("cannot read properties of undefined")],
  ["not an Error", () => "MongoNetworkError"],
];

describe("which driver errors mean the database is unavailable", () => {
  for (const [name, make] of UNAVAILABLE) {
    test(`${name} is unavailable`, () => {
      const error = make();
      assert.ok(isDatabaseUnavailable(error), `${name}: ${String(error)}`);
    });
  }
  test("the pool errors carry the names the driver gives them", () => {
    assert.equal(
      construct(poolErrors.WaitQueueTimeoutError, "Timed out", pool.address).name,
      "MongoWaitQueueTimeoutError",
    );
    assert.equal(construct(poolErrors.PoolClosedError, pool).name, "MongoPoolClosedError");
  });
  test("MongoServerSelectionError (nothing listening) is unavailable", async () => {
    const error = await serverSelectionError();
    assert.ok(error instanceof MongoServerSelectionError, String(error));
    assert.ok(isDatabaseUnavailable(error));
  });
  for (const [name, make] of REQUEST_ERRORS) {
    test(`${name} is not`, () => assert.equal(isDatabaseUnavailable(make()), false));
  }
});

describe("the API's answer to each", () => {
  const app = Fastify(problemServerOptions);
  const all = [...UNAVAILABLE, ["MongoServerSelectionError", serverSelectionError] as const];

  before(async () => {
    await app.register(problemDetailsPlugin);
    app.get<{ Params: { index: string } }>("/fail/:index", async (request) => {
      const [, make] = all[Number(request.params.index)] ?? ["none", () => new Error("no such case")];
      throw await make();
    });
    app.get("/duplicate", async () => {
      throw serverError(11000, "DuplicateKey", "E11000 duplicate key error");
    });
  });
  after(() => app.close());

  for (const [index, [name]] of all.entries()) {
    test(`${name}: 503 database_unavailable, problem details`, async () => {
      const response = await app.inject({ method: "GET", url: `/fail/${index}` });
      assert.equal(response.statusCode, 503);
      assert.equal(response.headers["content-type"], "application/problem+json; charset=utf-8");
      assert.equal(response.json().code, "database_unavailable");
    });
  }
  test("a request's own database error stays a 500, not a 503 (nothing to retry)", async () => {
    const response = await app.inject({ method: "GET", url: "/duplicate" });
    assert.equal(response.statusCode, 500);
    assert.equal(response.json().code, "internal_error");
  });
});

describe("a stopped FerretDB: waiting for a connection", () => {
  let dataDir: string;
  let ferret: EmbeddedFerretDb;

  before(async () => {
    dataDir = await mkdtemp(join(tmpdir(), "kestrel-availability-"));
    ferret = await startEmbeddedFerretDb({ dataDir });
  });
  after(async () => {
    process.kill(ferret.pid, "SIGCONT");
    await ferret.stop();
    await rm(dataDir, { recursive: true, force: true });
  });

  test("the call queued behind a stalled one fails with MongoWaitQueueTimeoutError: unavailable", async () => {
    // One connection; the monitor slow to give up, so the queued call times out before the pool is cleared.
    const client = new MongoClient(ferret.uri, {
      maxPoolSize: 1,
      waitQueueTimeoutMS: 200,
      heartbeatFrequencyMS: 60_000,
      connectTimeoutMS: 30_000,
      socketTimeoutMS: 30_000,
      retryReads: false,
    });
    try {
      const devices = client.db("availability").collection("devices");
      await devices.insertOne({ _id: "dev-1" } as never);
      process.kill(ferret.pid, "SIGSTOP");
      const checkedOut = new Promise((resolve) => client.once("connectionCheckedOut", resolve));
      const stalled = devices.findOne({ _id: "dev-1" } as never).catch((error: unknown) => error);
      await checkedOut;
      const queued = await devices.findOne({ _id: "dev-1" } as never).catch((error: unknown) => error);
      assert.ok(queued instanceof Error, "the queued call failed");
      assert.equal(queued.name, "MongoWaitQueueTimeoutError");
      assert.ok(isDatabaseUnavailable(queued));
      process.kill(ferret.pid, "SIGCONT");
      // Once the server answers again, the stalled call completes and the next one too.
      assert.deepEqual(await stalled, { _id: "dev-1" });
      assert.deepEqual(await devices.findOne({ _id: "dev-1" } as never), { _id: "dev-1" });
    } finally {
      process.kill(ferret.pid, "SIGCONT");
      await client.close(true);
    }
  });
});
