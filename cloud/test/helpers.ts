// A real cloud for tests: FerretDB started in a temp dir, the app built on it
// and driven with app.inject() (no socket), plus small request helpers.

import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after } from "node:test";
import type { FastifyInstance, LightMyRequestResponse } from "fastify";
import type { CommandStartedEvent, Db, MongoClient, MongoClientOptions } from "mongodb";
import { buildApp } from "../src/app.ts";
import { hashPassword } from "../src/auth/passwords.ts";
import type { Role } from "../src/auth/permissions.ts";
import { UserStore } from "../src/auth/user-store.ts";
import { loadConfig } from "../src/config.ts";
import { connectDb, type Database } from "../src/storage/connect.ts";
import { type EmbeddedFerretDb, startEmbeddedFerretDb } from "../src/storage/embedded-ferretdb.ts";
import { bootstrap, type Credentials } from "../src/tenants/bootstrap.ts";
import { MembershipStore } from "../src/tenants/membership-store.ts";

export interface TestCloud {
  app: FastifyInstance;
  db: Db;
  client: MongoClient;
  close(): Promise<void>;
}

/** `clientOptions` go to the driver (command monitoring, say). */
export async function startTestCloud(
  env: Record<string, string> = {},
  clientOptions: MongoClientOptions = {},
): Promise<TestCloud> {
  const dir = await mkdtemp(join(tmpdir(), "kestrel-cloud-test-"));
  const ferret = await startEmbeddedFerretDb({ dataDir: join(dir, "ferretdb") });
  const config = loadConfig({ DATA_DIR: dir, ...env });
  const database = await connectDb(ferret.uri, config.mongoDb, clientOptions);
  const app = await buildApp({ db: database.db, config });
  return {
    app,
    db: database.db,
    client: database.client,
    close: async () => {
      await app.close();
      await database.close();
      await ferret.stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

export const PASSWORD = "correct horse battery staple";

export function bootstrapTenant(db: Db, tenantName: string, deviceIds: string[]): Promise<Credentials> {
  const adminEmail = `admin@${tenantName.toLowerCase()}.test`;
  return bootstrap(db, { tenantName, adminEmail, adminPassword: PASSWORD, deviceIds });
}

/** Adds a user (created with PASSWORD if new) to an organization with a role. */
export async function addMember(db: Db, tenantId: string, email: string, role: Role): Promise<void> {
  await new UserStore(db).create(email, await hashPassword(PASSWORD));
  await new MembershipStore(db).ensure(tenantId, email, role);
}

export async function login(
  app: FastifyInstance,
  email: string,
  password = PASSWORD,
  organization?: string,
): Promise<string> {
  const payload = organization === undefined ? { email, password } : { email, password, organization };
  const response = await app.inject({ method: "POST", url: "/api/auth/login", payload });
  if (response.statusCode !== 200) throw new Error(`login answered ${response.statusCode}: ${response.body}`);
  return response.json<{ token: string }>().token;
}

export function bearer(token: string): Record<string, string> {
  return { authorization: `Bearer ${token}` };
}

export function ingest(app: FastifyInstance, gatewayKey: string, payload: object): Promise<LightMyRequestResponse> {
  return app.inject({ method: "POST", url: "/api/gateway/v1/ingest", headers: bearer(gatewayKey), payload });
}

/** A well-formed batch of `count` samples, one second apart, starting at `start`. */
export function batch(boot: number, firstSeq: number, count: number, start: number) {
  return {
    v: 1 as const,
    boot,
    samples: Array.from({ length: count }, (_, i) => ({
      seq: firstSeq + i,
      ts: start + i * 1000,
      m: { temperature: 20 + i / 10, pressure: 100_000 + i },
    })),
  };
}

/** The commands `client` started while `work` ran (the driver's command monitoring): round trips a test counts. */
export async function commandsDuring(
  client: MongoClient,
  work: () => Promise<unknown>,
): Promise<CommandStartedEvent[]> {
  const started: CommandStartedEvent[] = [];
  const onStart = (event: CommandStartedEvent) => started.push(event);
  client.on("commandStarted", onStart);
  try {
    await work();
  } finally {
    client.off("commandStarted", onStart);
  }
  return started;
}

/**
 * A FerretDB of the calling test file's own, started by the first `connect` and stopped after the
 * file's tests (with the connections `connect` opened): for tests of a store without the app.
 */
export function ownFerretDb(name: string): { connect(dbName: string): Promise<Database> } {
  let started: Promise<{ dir: string; ferret: EmbeddedFerretDb }> | undefined;
  const connections: Database[] = [];
  after(async () => {
    if (!started) return;
    const { dir, ferret } = await started;
    for (const connection of connections) await connection.close();
    await ferret.stop();
    await rm(dir, { recursive: true, force: true });
  });
  return {
    async connect(dbName) {
      started ??= (async () => {
        const dir = await mkdtemp(join(tmpdir(), `kestrel-${name}-`));
        return { dir, ferret: await startEmbeddedFerretDb({ dataDir: join(dir, "ferretdb") }) };
      })();
      const connection = await connectDb((await started).ferret.uri, dbName);
      connections.push(connection);
      return connection;
    },
  };
}
