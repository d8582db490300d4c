// Ingest of what a gateway forwards: telemetry batches and device states, each
// item checked with the wire contract's validators and against the gateway's
// tenant on its own, so one bad item is reported without refusing the rest.

import {
  type IngestRejection,
  type IngestResult,
  isDeviceId,
  type TelemetryBatch,
  validateDeviceState,
  validateTelemetryBatch,
} from "@kestrel/wire";
import type { Db } from "mongodb";
import type { DeviceStore } from "../devices/device-store.ts";
import type { LatestSample } from "../devices/device-view.ts";
import { type DeviceBatch, TelemetryStore } from "../telemetry/telemetry-store.ts";

export const MAX_ITEMS = 500;

/** The wire's IngestRequest before validation: the cloud checks every item itself. */
export interface IngestRequest {
  telemetry?: Array<{ deviceId: string; batch: unknown }>;
  states?: Array<{ deviceId: string; receivedAt: number; state: unknown }>;
}

export class IngestService {
  private readonly telemetry: TelemetryStore;

  constructor(
    db: Db,
    private readonly devices: DeviceStore,
  ) {
    this.telemetry = new TelemetryStore(db);
  }

  async ingest(tenantId: string, request: IngestRequest): Promise<IngestResult> {
    const telemetryItems = request.telemetry ?? [];
    const stateItems = request.states ?? [];
    const rejected: IngestRejection[] = [];
    const known = await this.devices.existing(
      tenantId,
      [...telemetryItems, ...stateItems].map((item) => item.deviceId).filter(isDeviceId),
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
    const stored = await this.telemetry.store(tenantId, batches);
    await this.recordLatest(tenantId, batches);

    for (const [index, { deviceId, receivedAt, state }] of stateItems.entries()) {
      if (!check("state", index, deviceId)) continue;
      const parsed = validateDeviceState(state);
      if (parsed.ok) await this.devices.recordState(tenantId, deviceId, parsed.value, receivedAt);
      else rejected.push({ kind: "state", index, deviceId, ...parsed.error });
    }
    return { ...stored, rejected };
  }

  /** Per device: the newest sample becomes `latest`; lastSeen moves to it, but never past now. */
  private async recordLatest(tenantId: string, batches: DeviceBatch[]): Promise<void> {
    const newest = new Map<string, LatestSample>();
    for (const { deviceId, batch } of batches) {
      const sample = newestSample(batch);
      const current = newest.get(deviceId);
      if (!current || sample.ts > current.ts) newest.set(deviceId, sample);
    }
    const now = Date.now();
    await Promise.all(
      [...newest].map(([deviceId, latest]) =>
        this.devices.recordTelemetry(tenantId, deviceId, latest, new Date(Math.min(latest.ts, now))),
      ),
    );
  }
}

function newestSample(batch: TelemetryBatch): LatestSample {
  return batch.samples.reduce((newest, sample) => (sample.ts > newest.ts ? sample : newest));
}
