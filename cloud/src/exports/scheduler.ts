// Runs scheduled exports. Every replica polls the schedules; for each schedule's latest tick at or
// before now (and not before the schedule was created) it inserts the run `<scheduleId>-<tick>`:
// the insert succeeds on exactly one replica, which exports [tick - range, tick) and POSTs the file
// to the webhook or stores it for download, then records the outcome. Ticks missed while no
// replica ran are not caught up, except the latest one.

import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import type { FastifyBaseLogger } from "fastify";
import type { Db } from "mongodb";
import { latestTick } from "./cron.ts";
import { ExportFileStore } from "./export-file-store.ts";
import { CONTENT_TYPES, type ExportTally } from "./export-format.ts";
import { ExportRunStore, type RunDoc, type RunOutcome, runId } from "./run-store.ts";
import type { ScheduleDoc } from "./schedule-store.ts";
import { ExportScheduleStore } from "./schedule-store.ts";
import { type ExportScope, exportFileName, TelemetryExport } from "./telemetry-export.ts";

export interface SchedulerOptions {
  /** The clock, epoch ms; tests step it. */
  now?: () => number;
  pollMs?: number;
  webhookTimeoutMs?: number;
}

const DEFAULT_POLL_MS = 5000;
const DEFAULT_WEBHOOK_TIMEOUT_MS = 60_000;

/** Why a delivery failed, in words fit for the run record (never the URL: it may hold a secret). */
function failureOf(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  const cause = (error as Error & { cause?: { code?: string; message?: string } }).cause;
  const detail = cause?.code ?? cause?.message;
  return detail ? `${error.message}: ${detail}` : error.message;
}

export class ExportScheduler {
  private readonly schedules: ExportScheduleStore;
  private readonly runs: ExportRunStore;
  private readonly files: ExportFileStore;
  private readonly exporter: TelemetryExport;
  private readonly now: () => number;
  private readonly pollMs: number;
  private readonly webhookTimeoutMs: number;
  /** The tick each schedule was last claimed for (by any replica), to skip claims bound to fail. */
  private claimed = new Map<string, number>();
  private timer: NodeJS.Timeout | undefined;
  private claiming: Promise<void> | undefined;
  private readonly running = new Set<Promise<RunDoc>>();

  constructor(
    db: Db,
    private readonly log: FastifyBaseLogger,
    options: SchedulerOptions = {},
  ) {
    this.schedules = new ExportScheduleStore(db);
    this.runs = new ExportRunStore(db);
    this.files = new ExportFileStore(db);
    this.exporter = new TelemetryExport(db);
    this.now = options.now ?? Date.now;
    this.pollMs = options.pollMs ?? DEFAULT_POLL_MS;
    this.webhookTimeoutMs = options.webhookTimeoutMs ?? DEFAULT_WEBHOOK_TIMEOUT_MS;
  }

  start(): void {
    this.timer = setInterval(() => {
      if (this.claiming) return;
      // Runs go on in the background, so a long export does not hold back the other schedules' ticks.
      this.claiming = this.claimDue()
        .then((won) => {
          for (const { schedule, run } of won) {
            this.track(this.execute(schedule, run)).catch((error: unknown) =>
              this.log.error({ err: error, runId: run._id }, "scheduled export could not be recorded"),
            );
          }
        })
        .catch((error: unknown) => this.log.error({ err: error }, "export scheduler poll failed"))
        .finally(() => {
          this.claiming = undefined;
        });
    }, this.pollMs);
    this.timer.unref();
  }

  /** Stops polling and waits for the runs under way. */
  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.claiming;
    await Promise.allSettled(this.running);
  }

  /** One pass, run to its end: claims the due ticks and runs those this scheduler won. */
  async poll(): Promise<RunDoc[]> {
    const won = await this.claimDue();
    return Promise.all(won.map(({ schedule, run }) => this.track(this.execute(schedule, run))));
  }

  private track(run: Promise<RunDoc>): Promise<RunDoc> {
    this.running.add(run);
    const forget = () => this.running.delete(run);
    run.then(forget, forget);
    return run;
  }

  /** Inserts the run of each schedule's due tick; answers those this scheduler won. */
  private async claimDue(): Promise<Array<{ schedule: ScheduleDoc; run: RunDoc }>> {
    const now = this.now();
    const schedules = await this.schedules.all();
    const claimed = new Map<string, number>();
    const won: Array<{ schedule: ScheduleDoc; run: RunDoc }> = [];
    for (const schedule of schedules) {
      const tick = latestTick(schedule.cron, now);
      const previous = this.claimed.get(schedule._id);
      if (previous !== undefined) claimed.set(schedule._id, previous);
      if (tick < schedule.createdAt.getTime() || previous === tick) continue;
      claimed.set(schedule._id, tick);
      const run = await this.runs.claim(
        {
          _id: runId(schedule._id, tick),
          tenantId: schedule.tenantId,
          scheduleId: schedule._id,
          tick: new Date(tick),
          from: new Date(tick - schedule.rangeSeconds * 1000),
          to: new Date(tick),
          format: schedule.format,
          destination: schedule.destination.type,
        },
        new Date(now),
      );
      if (run) won.push({ schedule, run });
    }
    this.claimed = claimed;
    return won;
  }

  private async execute(schedule: ScheduleDoc, run: RunDoc): Promise<RunDoc> {
    const log = this.log.child({ tenantId: run.tenantId, scheduleId: run.scheduleId, runId: run._id });
    const scope: ExportScope = {
      devices: schedule.devices,
      from: run.from.getTime(),
      to: run.to.getTime(),
      metrics: schedule.metrics ?? undefined,
      format: schedule.format,
    };
    const tally: ExportTally = { rows: 0, samples: 0, bytes: 0 };
    let outcome: RunOutcome;
    try {
      const chunks = await this.deliver(schedule, run, scope, tally);
      outcome = { status: "succeeded", rows: tally.rows, bytes: tally.bytes, ...(chunks !== undefined && { chunks }) };
      log.info({ rows: tally.rows, bytes: tally.bytes }, "scheduled export delivered");
    } catch (error) {
      outcome = { status: "failed", error: failureOf(error) };
      log.warn({ error: outcome.error }, "scheduled export failed");
    }
    const finishedAt = new Date(this.now());
    await this.runs.finish(run._id, outcome, finishedAt);
    return { ...run, ...outcome, finishedAt };
  }

  /** Sends the export where the schedule says; the stored chunk count for a download. */
  private async deliver(
    schedule: ScheduleDoc,
    run: RunDoc,
    scope: ExportScope,
    tally: ExportTally,
  ): Promise<number | undefined> {
    const body = this.exporter.stream(run.tenantId, scope, tally);
    if (schedule.destination.type === "download") {
      const sink = this.files.sink(run.tenantId, run._id);
      try {
        await pipeline(body, sink);
      } catch (error) {
        await this.files.discard(run._id, sink.chunks());
        throw error;
      }
      return sink.chunks();
    }
    // Node's fetch streams a request body only in half-duplex mode, which the DOM types omit.
    const request: RequestInit & { duplex: "half" } = {
      method: "POST",
      headers: {
        "content-type": CONTENT_TYPES[scope.format],
        "content-disposition": `attachment; filename="${exportFileName(scope)}"`,
        "x-kestrel-schedule": schedule._id,
        "x-kestrel-run": run._id,
      },
      body: Readable.toWeb(body) as ReadableStream<Uint8Array>,
      duplex: "half",
      redirect: "error",
      signal: AbortSignal.timeout(this.webhookTimeoutMs),
    };
    const response = await fetch(schedule.destination.url, request);
    await response.body?.cancel();
    if (!response.ok) throw new Error(`webhook answered HTTP ${response.status}`);
    return undefined;
  }
}
