// Connects to MongoDB (or FerretDB) and makes sure every capability's indexes
// exist before the app serves a request.

import { type Db, MongoClient } from "mongodb";
import { AlertStore } from "../alerts/alert-store.ts";
import { RuleStore } from "../alerts/rule-store.ts";
import { SessionStore } from "../auth/session-store.ts";
import { CommandStore } from "../commands/command-store.ts";
import { DeviceStore } from "../devices/device-store.ts";
import { ExportRunStore } from "../exports/run-store.ts";
import { ExportScheduleStore } from "../exports/schedule-store.ts";
import { GatewayKeyStore } from "../gateway/gateway-key-store.ts";
import { UplinkProgressStore } from "../gateway/uplink-progress.ts";
import { KeyStore } from "../keys/key-store.ts";
import { LogStore } from "../logs/log-store.ts";
import { TelemetryStore } from "../telemetry/telemetry-store.ts";
import { InvitationStore } from "../tenants/invitation-store.ts";
import { MembershipStore } from "../tenants/membership-store.ts";
import { TenantStore } from "../tenants/tenant-store.ts";
import { DeliveryStore } from "../webhooks/delivery-store.ts";
import { EndpointStore } from "../webhooks/endpoint-store.ts";

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

export async function connectDb(uri: string, dbName: string): Promise<Database> {
  // Command monitoring feeds the MongoDB latency histogram of /metrics.
  const client = new MongoClient(uri, {
    serverSelectionTimeoutMS: 10_000,
    appName: "kestrel-cloud",
    monitorCommands: true,
  });
  await client.connect();
  try {
    const db = client.db(dbName);
    addresses.set(db, { uri, dbName });
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
      EndpointStore.createIndexes,
      RuleStore.createIndexes,
      AlertStore.createIndexes,
      DeliveryStore.createIndexes,
    ]) {
      await createIndexes(db);
    }
    return { client, db, close: () => client.close() };
  } catch (error) {
    await client.close();
    throw error;
  }
}
