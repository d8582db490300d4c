// Devices of a tenant: identity, token hash, and the state the platform last
// heard from them. The id `<tenantId>|<deviceId>` makes every lookup a point
// read, which is the only kind of filter FerretDB pushes down to its storage.

import type { DeviceState, ResetReason } from "@kestrel/wire";
import type { Collection, Db } from "mongodb";
import { secretMatches } from "../auth/secrets.ts";
import type { LatestSample } from "./device-view.ts";

export interface DeviceDoc {
  _id: string;
  tenantId: string;
  deviceId: string;
  name: string;
  tokenHash: string;
  createdAt: Date;
  online: boolean;
  // Absent until the device first reports them.
  lastSeen?: Date;
  /** Gateway receive time of the state applied last; older states are ignored. */
  stateAt?: number;
  fw?: string;
  boot?: number;
  reset?: ResetReason;
  uptime?: number;
  heap?: number;
  rssi?: number;
  latest?: LatestSample;
}

export const MAX_DEVICES_LISTED = 1000;

export function deviceDocId(tenantId: string, deviceId: string): string {
  return `${tenantId}|${deviceId}`;
}

export class DeviceStore {
  private readonly devices: Collection<DeviceDoc>;

  constructor(db: Db) {
    this.devices = db.collection<DeviceDoc>("devices");
  }

  static async createIndexes(db: Db): Promise<void> {
    await db.collection<DeviceDoc>("devices").createIndex({ tenantId: 1, deviceId: 1 }, { unique: true });
  }

  /** Registers the device or replaces its token. */
  async upsertWithToken(tenantId: string, deviceId: string, tokenHash: string): Promise<void> {
    await this.devices.updateOne(
      { _id: deviceDocId(tenantId, deviceId) },
      {
        $set: { tokenHash },
        $setOnInsert: { tenantId, deviceId, name: deviceId, createdAt: new Date(), online: false },
      },
      { upsert: true },
    );
  }

  find(tenantId: string, deviceId: string): Promise<DeviceDoc | null> {
    return this.devices.findOne({ _id: deviceDocId(tenantId, deviceId) });
  }

  list(tenantId: string): Promise<DeviceDoc[]> {
    return this.devices.find({ tenantId }).sort({ deviceId: 1 }).limit(MAX_DEVICES_LISTED).toArray();
  }

  /** Which of these device ids exist in the tenant (one point read each). */
  async existing(tenantId: string, deviceIds: Iterable<string>): Promise<Set<string>> {
    const ids = [...new Set(deviceIds)];
    const found = await Promise.all(
      ids.map((deviceId) => this.devices.findOne({ _id: deviceDocId(tenantId, deviceId) }, { projection: { _id: 1 } })),
    );
    return new Set(ids.filter((_, i) => found[i] !== null));
  }

  /** True only for a device of this tenant whose token matches. */
  async verifyToken(tenantId: string, deviceId: string, token: string): Promise<boolean> {
    const device = await this.devices.findOne(
      { _id: deviceDocId(tenantId, deviceId) },
      { projection: { tokenHash: 1 } },
    );
    return device !== null && secretMatches(token, device.tokenHash);
  }

  /** Moves lastSeen forward and replaces `latest` when this sample is newer. */
  async recordTelemetry(tenantId: string, deviceId: string, latest: LatestSample, seenAt: Date): Promise<void> {
    const _id = deviceDocId(tenantId, deviceId);
    await this.devices.updateOne({ _id }, { $max: { lastSeen: seenAt } });
    await this.devices.updateOne({ _id, "latest.ts": { $not: { $gte: latest.ts } } }, { $set: { latest } });
  }

  /** Applies a reported state unless a later one (by gateway receive time) was applied already. */
  async recordState(tenantId: string, deviceId: string, state: DeviceState, receivedAt: number): Promise<void> {
    const update: Partial<DeviceDoc> = { online: state.online, stateAt: receivedAt };
    if (state.fw !== undefined) update.fw = state.fw;
    if (state.boot !== undefined) update.boot = state.boot;
    if (state.reset !== undefined) update.reset = state.reset;
    if (state.uptime !== undefined) update.uptime = state.uptime;
    if (state.heap !== undefined) update.heap = state.heap;
    if (state.rssi !== undefined) update.rssi = state.rssi;
    await this.devices.updateOne(
      { _id: deviceDocId(tenantId, deviceId), stateAt: { $not: { $gt: receivedAt } } },
      { $set: update, $max: { lastSeen: new Date(receivedAt) } },
    );
  }
}
