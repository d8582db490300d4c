// Connects to MongoDB (or FerretDB) with a deadline on every call, and makes
// sure every capability's indexes exist before the app serves a request.
//
// Deadlines, all client-side (FerretDB v1 honours `maxTimeMS` only on finds and
// aggregations, and a stopped server honours nothing):
// - the driver's monitor checks the server every HEARTBEAT_MS and gives it
//   CHECK_TIMEOUT_MS to answer; a check that times out marks the server
//   unknown and interrupts the operations in flight on it;
// - while the server is unknown, an operation waits SERVER_SELECTION_MS for it
//   and then fails, and a connection is waited for WAIT_QUEUE_MS at most;
// - SOCKET_TIMEOUT_MS bounds any one answer, for a server that still answers
//   the monitor but not a command (a wedged backend).
// Each failure reaches the API's error handler, which answers 503 (see
// availability.ts); the monitor keeps checking, so the next call after the
// server is back succeeds: nothing to restart.

import { type Db, MongoClient, type MongoClientOptions } from "mongodb";
import { AlertStore } from "../alerts/alert-store.ts";
import { RuleStore } from "../alerts/rule-store.ts";
import { ArtifactStore } from "../artifacts/artifact-store.ts";
import { SessionStore } from "../auth/session-store.ts";
import { CommandStore } from "../commands/command-store.ts";
import { DeviceStore } from "../devices/device-store.ts";
import { ExportRunStore } from "../exports/run-store.ts";
import { ExportScheduleStore } from "../exports/schedule-store.ts";
import { GatewayKeyStore } from "../gateway/gateway-key-store.ts";
import { UplinkProgressStore } from "../gateway/uplink-progress.ts";
import { KeyStore } from "../keys/key-store.ts";
import { LogStore } from "../logs/log-store.ts";
import { CampaignHistory } from "../ota/campaign-history.ts";
import { CampaignStore } from "../ota/campaign-store.ts";
import { ResetLog } from "../ota/reset-log.ts";
import { SigningService } from "../signing/signing-service.ts";
import { TelemetryStore } from "../telemetry/telemetry-store.ts";
import { InvitationStore } from "../tenants/invitation-store.ts";
import { MembershipStore } from "../tenants/membership-store.ts";
import { TenantStore } from "../tenants/tenant-store.ts";
import { DeliveryStore } from "../webhooks/delivery-store.ts";
import { EndpointStore } from "../webhooks/endpoint-store.ts";
import { DatabaseProbe, registerProbe } from "./availability.ts";
import { MAX_POOL_SIZE } from "./command-bounds.ts";
import { detectEngine } from "./engine.ts";

export interface Database {
  client: MongoClient;
  db: Db;
  close(): Promise<void>;
}

/** Where a database was opened: what another thread (an export worker) needs to open it too. */
export interface DatabaseAddress {
  uri: string;
  dbName: string;
}

const addresses = new WeakMap<Db, DatabaseAddress>();

/** The address `connectDb` opened this database at, if it did. */
export function databaseAddress(db: Db): DatabaseAddress | undefined {
  return addresses.get(db);
}

/** The driver's own minimum. */
const HEARTBEAT_MS = 500;
const CHECK_TIMEOUT_MS = 1_500;
const SERVER_SELECTION_MS = 1_000;
const WAIT_QUEUE_MS = 2_000;
const SOCKET_TIMEOUT_MS = 15_000;
/** How long the first connection may take (a database still starting up). */
const CONNECT_DEADLINE_MS = 15_000;
/** How long closing may wait for the server before the connections are dropped. */
const CLOSE_DEADLINE_MS = 2_000;

export const CLIENT_DEADLINES: MongoClientOptions = {
  maxPoolSize: MAX_POOL_SIZE,
  heartbeatFrequencyMS: HEARTBEAT_MS,
  connectTimeoutMS: CHECK_TIMEOUT_MS,
  serverSelectionTimeoutMS: SERVER_SELECTION_MS,
  waitQueueTimeoutMS: WAIT_QUEUE_MS,
  socketTimeoutMS: SOCKET_TIMEOUT_MS,
};

/** `client.close()`, but never longer than the deadline: then the connections are closed unanswered. */
export async function closeClient(client: MongoClient, deadlineMs = CLOSE_DEADLINE_MS): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<"late">((resolve) => {
    timer = setTimeout(() => resolve("late"), deadlineMs);
  });
  const outcome = await Promise.race([client.close().then(() => "closed" as const), late]);
  clearTimeout(timer);
  if (outcome === "late") await client.close(true);
}

/** Connects, retrying while the server is not up yet, for at most CONNECT_DEADLINE_MS. */
async function connected(client: MongoClient): Promise<void> {
  const deadline = Date.now() + CONNECT_DEADLINE_MS;
  for (;;) {
    try {
      await client.connect();
      await client.db("admin").command({ ping: 1 });
      return;
    } catch (error) {
      if (Date.now() > deadline) throw error;
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
  }
}

/**
 * Opens the database. `options` go to the driver over the deadlines above (a test's command
 * monitoring, say); a `maxPoolSize` in the URI is kept too.
 */
export async function connectDb(uri: string, dbName: string, options: MongoClientOptions = {}): Promise<Database> {
  // Command monitoring feeds the MongoDB latency histogram of /metrics.
  const settings: MongoClientOptions = {
    appName: "kestrel-cloud",
    ...CLIENT_DEADLINES,
    monitorCommands: true,
    ...options,
  };
  if (/[?&]maxPoolSize=/i.test(uri) && options.maxPoolSize === undefined) delete settings.maxPoolSize;
  const client = new MongoClient(uri, settings);
  const probe = new DatabaseProbe(uri, dbName);
  try {
    await connected(client);
    const db = client.db(dbName);
    addresses.set(db, { uri, dbName });
    await detectEngine(db);
    for (const createIndexes of [
      TenantStore.createIndexes,
      MembershipStore.createIndexes,
      InvitationStore.createIndexes,
      SessionStore.createIndexes,
      DeviceStore.createIndexes,
      GatewayKeyStore.createIndexes,
      UplinkProgressStore.createIndexes,
      KeyStore.createIndexes,
      TelemetryStore.createIndexes,
      LogStore.createIndexes,
      CommandStore.createIndexes,
      ExportScheduleStore.createIndexes,
      ExportRunStore.createIndexes,
      SigningService.createIndexes,
      ArtifactStore.createIndexes,
      CampaignStore.createIndexes,
      CampaignHistory.createIndexes,
      ResetLog.createIndexes,
      EndpointStore.createIndexes,
      RuleStore.createIndexes,
      AlertStore.createIndexes,
      DeliveryStore.createIndexes,
    ]) {
      await createIndexes(db);
    }
    registerProbe(db, probe);
    return {
      client,
      db,
      close: async () => {
        await Promise.all([closeClient(client), probe.close()]);
      },
    };
  } catch (error) {
    await Promise.all([closeClient(client), probe.close()]);
    throw error;
  }
}
