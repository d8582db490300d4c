// What an export holds and where its bytes come from: the devices of a scope (listed, or every
// device of the organization, paged), their raw samples in time order from the telemetry store,
// encoded as a back-pressure aware byte stream. The encoding runs in an export worker
// (export-workers.ts): its heap is bounded apart from the API's.

import type { Readable } from "node:stream";
import type { Db } from "mongodb";
import { DeviceStore } from "../devices/device-store.ts";
import { deviceNotFound } from "../devices/plugin.ts";
import { TelemetryStore } from "../telemetry/telemetry-store.ts";
import { type ExportBatch, type ExportFormat, type ExportTally, encodeExport } from "./export-format.ts";
import { exportWorkers } from "./export-workers.ts";

/** Every device of the organization, or these ones. */
export type DeviceScope = "all" | readonly string[];

export interface ExportScope {
  devices: DeviceScope;
  /** Epoch ms, from inclusive, to exclusive. */
  from: number;
  to: number;
  /** Only these metrics; all when undefined. */
  metrics: readonly string[] | undefined;
  format: ExportFormat;
}

// Devices read per page when the scope is the whole organization.
const DEVICE_PAGE = 500;

function compactTime(ms: number): string {
  return new Date(ms)
    .toISOString()
    .replace(/[-:]/g, "")
    .replace(/\.\d{3}Z$/, "Z");
}

/** The download's file name: what, from when, to when. Device ids need no escaping (wire syntax). */
export function exportFileName(scope: ExportScope): string {
  const what = scope.devices !== "all" && scope.devices.length === 1 ? scope.devices[0] : "devices";
  return `telemetry-${what}-${compactTime(scope.from)}-${compactTime(scope.to)}.${scope.format}`;
}

export class TelemetryExport {
  private readonly devices: DeviceStore;
  private readonly telemetry: TelemetryStore;

  constructor(private readonly db: Db) {
    this.devices = new DeviceStore(db);
    this.telemetry = new TelemetryStore(db);
  }

  /** Refuses, before any byte is sent, a listed device the organization does not have. */
  async checkDevices(tenantId: string, devices: DeviceScope): Promise<void> {
    if (devices === "all") return;
    const existing = await this.devices.existing(tenantId, devices);
    const missing = devices.find((deviceId) => !existing.has(deviceId));
    if (missing !== undefined) throw deviceNotFound(missing);
  }

  /**
   * The encoded export, from an export worker; `tally` counts what was written once the stream
   * has ended. What this process journalled is applied first, so the export reads its writes.
   */
  stream(tenantId: string, scope: ExportScope, tally: ExportTally): Readable {
    return exportWorkers(this.db).stream({ tenantId, scope }, tally, () => this.telemetry.settle());
  }

  /** The export's bytes, encoded here: what an export worker runs. */
  encode(tenantId: string, scope: ExportScope, tally: ExportTally): AsyncGenerator<Buffer> {
    const metrics = scope.metrics && [...scope.metrics];
    return encodeExport(scope.format, this.batches(tenantId, scope), tally, metrics);
  }

  private async *batches(tenantId: string, scope: ExportScope): AsyncGenerator<ExportBatch> {
    for await (const deviceId of this.deviceIds(tenantId, scope.devices)) {
      for await (const samples of this.telemetry.iterateHours(tenantId, deviceId, scope.from, scope.to)) {
        yield { deviceId, samples };
      }
    }
  }
  private async *deviceIds(tenantId: string, devices: DeviceScope): AsyncGenerator<string> {
    if (devices !== "all") {
      yield* devices;
      return;
    }
    let after: string | undefined;
    for (;;) {
      const page = await this.devices.search(tenantId, {
        sort: "id",
        order: "asc",
        limit: DEVICE_PAGE,
        ...(after !== undefined && { after: { value: after, deviceId: after } }),
      });
      for (const doc of page.items) yield doc.deviceId;
      if (!page.endedAt) return;
      after = page.endedAt.deviceId;
    }
  }
}
