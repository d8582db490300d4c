// Ingest of what a gateway forwards: telemetry batches and device states, each
// item checked with the wire contract's validators and against the gateway's
// tenant on its own, so one bad item is reported without refusing the rest.

import {
  type IngestRejection,
  type IngestResult,
  isDeviceId,
  validateDeviceState,
  validateLogBatch,
  validateTelemetryBatch,
} from "@kestrel/wire";
import type { Db } from "mongodb";
import { DeviceStateJournal } from "../alerts/device-state-journal.ts";
import type { DeviceStore, ReportedState } from "../devices/device-store.ts";
import { type DeviceLogBatch, LogStore } from "../logs/log-store.ts";
import { ResetLog } from "../ota/reset-log.ts";
import { type DeviceBatch, TelemetryStore } from "../telemetry/telemetry-store.ts";

export const MAX_ITEMS = 500;

/** The wire's IngestRequest before validation: the cloud checks every item itself. */
export interface IngestRequest {
  telemetry?: Array<{ deviceId: string; batch: unknown }>;
  states?: Array<{ deviceId: string; receivedAt: number; state: unknown }>;
  logs?: Array<{ deviceId: string; receivedAt: number; batch: unknown }>;
}

export class IngestService {
  private readonly telemetry: TelemetryStore;
  private readonly logs: LogStore;
  private readonly resets: ResetLog;
  private readonly known: KnownDevices;
  private readonly stateJournal: DeviceStateJournal;

  constructor(
    db: Db,
    private readonly devices: DeviceStore,
  ) {
    this.telemetry = new TelemetryStore(db);
    this.logs = new LogStore(db);
    this.resets = new ResetLog(db);
    this.known = new KnownDevices(devices);
    this.stateJournal = new DeviceStateJournal(db);
  }

  async ingest(tenantId: string, request: IngestRequest): Promise<IngestResult> {
    const telemetryItems = request.telemetry ?? [];
    const stateItems = request.states ?? [];
    const logItems = request.logs ?? [];
    const rejected: IngestRejection[] = [];
    const known = await this.known.existing(
      tenantId,
      [...telemetryItems, ...stateItems, ...logItems].map((item) => item.deviceId).filter(isDeviceId),
    );
    const check = (kind: IngestRejection["kind"], index: number, deviceId: string): boolean => {
      if (!isDeviceId(deviceId)) {
        rejected.push({ kind, index, deviceId, code: "invalid_device_id", message: "not a valid device id" });
        return false;
      }
      if (!known.has(deviceId)) {
        rejected.push({ kind, index, deviceId, code: "unknown_device", message: "no such device in this tenant" });
        return false;
      }
      return true;
    };

    const batches: DeviceBatch[] = [];
    for (const [index, { deviceId, batch }] of telemetryItems.entries()) {
      if (!check("telemetry", index, deviceId)) continue;
      const parsed = validateTelemetryBatch(batch);
      if (parsed.ok) batches.push({ deviceId, batch: parsed.value });
      else rejected.push({ kind: "telemetry", index, deviceId, ...parsed.error });
    }
    // Devices' latest sample and lastSeen follow when the journal is applied (TelemetryStore), once per device.
    const stored = await this.telemetry.store(tenantId, batches);

    const states: ReportedState[] = [];
    for (const [index, { deviceId, receivedAt, state }] of stateItems.entries()) {
      if (!check("state", index, deviceId)) continue;
      const parsed = validateDeviceState(state);
      if (!parsed.ok) {
        rejected.push({ kind: "state", index, deviceId, ...parsed.error });
        continue;
      }
      states.push({ deviceId, state: parsed.value, receivedAt });
      // Campaigns compare a device's watchdog resets after an update with before it.
      const { reset, boot } = parsed.value;
      if (reset !== undefined && boot !== undefined)
        await this.resets.record(tenantId, deviceId, boot, reset, new Date(receivedAt));
    }
    await this.devices.recordStates(tenantId, states);
    // Connection, safe-mode and reset changes reach the alert engine (alerts/alert-engine.ts) in order.
    await this.stateJournal.append(tenantId, states);

    const logBatches: DeviceLogBatch[] = [];
    for (const [index, { deviceId, receivedAt, batch }] of logItems.entries()) {
      if (!check("log", index, deviceId)) continue;
      const parsed = validateLogBatch(batch);
      if (parsed.ok) logBatches.push({ deviceId, receivedAt, batch: parsed.value });
      else rejected.push({ kind: "log", index, deviceId, ...parsed.error });
    }
    // accepted counts telemetry samples; log records are deduplicated on their own.
    await this.logs.store(tenantId, logBatches);
    return { ...stored, rejected };
  }
}

/** How long a device found in its tenant is trusted to still be there without asking the store. */
export const KNOWN_DEVICE_TTL_MS = 30_000;
const KNOWN_DEVICES_MAX = 100_000;

/**
 * Devices recently found in their tenant: a busy gateway sends the same devices request after
 * request, and asking the store for each costs more than storing their telemetry. Only positive
 * answers are kept, so a new device is seen at once; a deleted one may still be accepted for up
 * to the TTL.
 */
class KnownDevices {
  private readonly seen = new Map<string, number>();

  constructor(private readonly devices: DeviceStore) {}

  async existing(tenantId: string, deviceIds: string[]): Promise<Set<string>> {
    const now = Date.now();
    const known = new Set<string>();
    const unknown: string[] = [];
    for (const deviceId of new Set(deviceIds)) {
      if ((this.seen.get(`${tenantId}|${deviceId}`) ?? 0) > now) known.add(deviceId);
      else unknown.push(deviceId);
    }
    if (unknown.length === 0) return known;
    if (this.seen.size > KNOWN_DEVICES_MAX) this.seen.clear();
    for (const deviceId of await this.devices.existing(tenantId, unknown)) {
      this.seen.set(`${tenantId}|${deviceId}`, now + KNOWN_DEVICE_TTL_MS);
      known.add(deviceId);
    }
    return known;
  }
}
