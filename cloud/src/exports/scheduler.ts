// Runs scheduled exports. Every replica polls the schedules; for each schedule's ticks up to the
// organization's horizon (and not before the schedule was created) it inserts the run
// `<scheduleId>-<tick>`: the insert succeeds on exactly one replica, which exports
// [tick - range, tick) and POSTs the signed file to the webhook or stores it for download, renewing
// the run's lease meanwhile, then records the outcome. A run whose lease expires lost its replica:
// any replica retries its tick as the next attempt. Ticks missed while no replica ran are not caught
// up, except the latest one.
//
// Allowed lateness: a sample reaches the cloud after its timestamp (the device batches samples,
// the gateway queues them), and ranges do not overlap, so a run that read [t0, t1) right at t1
// would leave late samples in no export at all. A tick t is run only once the horizon passes it:
// the earliest moment up to which every gateway of the organization reports its uplink delivered
// (gateway/uplink-progress.ts), capped at now, minus the allowed lateness for the device side
// (EXPORT_ALLOWED_LATENESS); but never later than the maximum wait after the tick
// (EXPORT_MAX_WAIT), so a gateway cut off from the cloud delays exports, it does not stop them.
// A run records whether its data was complete by that rule; samples later still are in no
// scheduled export (the on-demand export has them).

import { tmpdir } from "node:os";
import { pipeline } from "node:stream/promises";
import type { FastifyBaseLogger } from "fastify";
import type { Db } from "mongodb";
import type { SecretBox } from "../auth/secret-box.ts";
import { EventPublisher } from "../events/event-publisher.ts";
import { UplinkProgressStore } from "../gateway/uplink-progress.ts";
import { TelemetryStore } from "../telemetry/telemetry-store.ts";
import { WebhookEgress } from "../webhooks/egress.ts";
import { WebhookPoster } from "../webhooks/http-post.ts";
import { latestTick } from "./cron.ts";
import { ExportFileStore } from "./export-file-store.ts";
import { CONTENT_TYPES, type ExportTally } from "./export-format.ts";
import { ExportRunStore, REPLICA_LOST, type RunDoc, type RunOutcome, runId } from "./run-store.ts";
import type { ScheduleDoc } from "./schedule-store.ts";
import { ExportScheduleStore } from "./schedule-store.ts";
import { type ExportScope, exportFileName, TelemetryExport } from "./telemetry-export.ts";
import { WebhookSender } from "./webhook-delivery.ts";

export interface SchedulerOptions {
  /** Opens the schedules' sealed signing secrets. */
  secrets: SecretBox;
  /** Where webhooks may go; default: anywhere public, nothing internal. */
  egress?: WebhookEgress;
  /** The clock, epoch ms; tests step it. */
  now?: () => number;
  pollMs?: number;
  webhookTimeoutMs?: number;
  /** How long a run's lease lasts unless renewed; renewed every third of it while the run goes on. */
  leaseMs?: number;
  /** Attempts per tick, the first included, when replicas are lost during it. */
  maxAttempts?: number;
  /** How long a stored file is kept. */
  fileTtlMs?: number;
  /** Where webhook bodies are spooled before they are signed and sent. */
  spoolDir?: string;
  /** How long after a tick samples may still arrive from devices, beyond what gateways report. */
  allowedLatenessMs?: number;
  /** The longest a tick waits for the organization's gateways to catch up. */
  maxWaitMs?: number;
}

export const DEFAULT_ALLOWED_LATENESS_MS = 15_000;
export const DEFAULT_MAX_WAIT_MS = 300_000;
/** Ticks one schedule may catch up in one pass once its horizon jumps (a gateway's backlog drained). */
const MAX_CATCH_UP_TICKS = 60;
/** How long a run waits for the journal written before it started to be applied (by whichever replica). */
const JOURNAL_WAIT_MS = 10_000;

/** Up to where an organization's data can be exported, and up to where it is known complete. */
interface Horizon {
  until: number;
  complete: number;
}

const DEFAULT_POLL_MS = 5000;
const DEFAULT_WEBHOOK_TIMEOUT_MS = 60_000;
const DEFAULT_LEASE_MS = 60_000;
const DEFAULT_MAX_ATTEMPTS = 3;
const DEFAULT_FILE_TTL_MS = 7 * 86_400_000;

/** Why a delivery failed, in words fit for the run record (never the URL: it may hold a secret). */
function failureOf(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  const cause = (error as Error & { cause?: { code?: string; message?: string } }).cause;
  const detail = cause?.code ?? cause?.message;
  return detail ? `${error.message}: ${detail}` : error.message;
}

/** The run's lease was taken over: another replica found it expired and runs the tick again. */
class LeaseLost extends Error {
  constructor() {
    super("the run's lease expired and another replica took the tick over");
  }
}

/** A running attempt's hold on its lease, renewed on a timer until stopped. */
interface HeldLease {
  signal: AbortSignal;
  /** Renews now; throws LeaseLost once the attempt was superseded. */
  check(): Promise<void>;
  stop(): void;
}

interface ClaimedRun {
  schedule: ScheduleDoc;
  run: RunDoc;
}

export class ExportScheduler {
  private readonly schedules: ExportScheduleStore;
  private readonly runs: ExportRunStore;
  private readonly files: ExportFileStore;
  private readonly exporter: TelemetryExport;
  private readonly secrets: SecretBox;
  private readonly webhooks: WebhookSender;
  private readonly events: EventPublisher;
  private readonly now: () => number;
  private readonly pollMs: number;
  private readonly leaseMs: number;
  private readonly maxAttempts: number;
  private readonly fileTtlMs: number;
  private readonly allowedLatenessMs: number;
  private readonly maxWaitMs: number;
  private readonly progress: UplinkProgressStore;
  private readonly telemetry: TelemetryStore;
  /** The tick each schedule was last claimed for (by any replica), to skip claims bound to fail. */
  private claimed = new Map<string, number>();
  private timer: NodeJS.Timeout | undefined;
  private claiming: Promise<void> | undefined;
  private readonly running = new Set<Promise<RunDoc>>();

  constructor(
    db: Db,
    private readonly log: FastifyBaseLogger,
    options: SchedulerOptions,
  ) {
    this.schedules = new ExportScheduleStore(db);
    this.runs = new ExportRunStore(db);
    this.files = new ExportFileStore(db);
    this.exporter = new TelemetryExport(db);
    this.secrets = options.secrets;
    this.now = options.now ?? Date.now;
    this.pollMs = options.pollMs ?? DEFAULT_POLL_MS;
    this.leaseMs = options.leaseMs ?? DEFAULT_LEASE_MS;
    this.maxAttempts = options.maxAttempts ?? DEFAULT_MAX_ATTEMPTS;
    this.fileTtlMs = options.fileTtlMs ?? DEFAULT_FILE_TTL_MS;
    this.events = new EventPublisher(db, this.now);
    this.allowedLatenessMs = options.allowedLatenessMs ?? DEFAULT_ALLOWED_LATENESS_MS;
    this.maxWaitMs = Math.max(options.maxWaitMs ?? DEFAULT_MAX_WAIT_MS, this.allowedLatenessMs);
    this.progress = new UplinkProgressStore(db);
    this.telemetry = new TelemetryStore(db);
    this.webhooks = new WebhookSender(
      new WebhookPoster(options.egress ?? new WebhookEgress(), options.webhookTimeoutMs ?? DEFAULT_WEBHOOK_TIMEOUT_MS),
      options.spoolDir ?? tmpdir(),
      this.now,
    );
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

  /** One pass, run to its end: recovers lost runs, claims the due ticks, and runs what this scheduler won. */
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

  /** The organization's horizon now: see the allowed lateness above. */
  private async horizonOf(tenantId: string, now: number): Promise<Horizon> {
    const delivered = Math.min(now, (await this.progress.completeUntil(tenantId, now)) ?? now);
    const complete = delivered - this.allowedLatenessMs;
    return { complete, until: Math.max(complete, now - this.maxWaitMs) };
  }

  /** The schedule's ticks after `previous` up to `until`, oldest first; only the latest when there is no previous. */
  private ticksUpTo(schedule: ScheduleDoc, until: number, previous: number | undefined): number[] {
    const ticks: number[] = [];
    for (let tick = latestTick(schedule.cron, until); ticks.length < MAX_CATCH_UP_TICKS; ) {
      if (tick < schedule.createdAt.getTime() || (previous !== undefined && tick <= previous)) break;
      ticks.unshift(tick);
      if (previous === undefined) break;
      tick = latestTick(schedule.cron, tick - 1);
    }
    return ticks;
  }

  /** Retries the ticks of lost runs and inserts the runs of each schedule's due ticks; answers those this scheduler won. */
  private async claimDue(): Promise<ClaimedRun[]> {
    const now = this.now();
    const won = await this.recoverLost(now);
    const schedules = await this.schedules.all();
    const claimed = new Map<string, number>();
    const horizons = new Map<string, Horizon>();
    for (const schedule of schedules) {
      const horizon = horizons.get(schedule.tenantId) ?? (await this.horizonOf(schedule.tenantId, now));
      horizons.set(schedule.tenantId, horizon);
      const previous = this.claimed.get(schedule._id);
      if (previous !== undefined) claimed.set(schedule._id, previous);
      for (const tick of this.ticksUpTo(schedule, horizon.until, previous)) {
        claimed.set(schedule._id, tick);
        const run = await this.claimAttempt(schedule, tick, 1, now, tick <= horizon.complete);
        if (run) won.push({ schedule, run });
      }
    }
    this.claimed = claimed;
    return won;
  }

  private claimAttempt(
    schedule: ScheduleDoc,
    tick: number,
    attempt: number,
    now: number,
    dataComplete: boolean,
  ): Promise<RunDoc | null> {
    return this.runs.claim(
      {
        _id: runId(schedule._id, tick, attempt),
        tenantId: schedule.tenantId,
        scheduleId: schedule._id,
        tick: new Date(tick),
        attempt,
        dataComplete,
        from: new Date(tick - schedule.rangeSeconds * 1000),
        to: new Date(tick),
        format: schedule.format,
        destination: schedule.destination.type,
      },
      new Date(now),
      new Date(now + this.leaseMs),
    );
  }

  /**
   * Attempts whose lease expired lost their replica: each is recorded failed (`replica_lost`), what it
   * stored is removed, and its tick claimed again as the next attempt, up to maxAttempts, unless the
   * schedule is gone. The retry is claimed before the lost attempt is closed, so a replica that was
   * only slow sees it at its next renewal and stops.
   */
  private async recoverLost(now: number): Promise<ClaimedRun[]> {
    const won: ClaimedRun[] = [];
    for (const lease of await this.runs.expiredLeases(new Date(now))) {
      const run = await this.runs.find(lease._id);
      if (run && run.status !== "running") {
        // Recorded, but its replica stopped before dropping the lease.
        await this.runs.release(lease._id);
        continue;
      }
      const schedule = lease.attempt < this.maxAttempts ? await this.schedules.get(lease.scheduleId) : null;
      const complete = schedule && lease.tick.getTime() <= (await this.horizonOf(schedule.tenantId, now)).complete;
      const retry =
        schedule &&
        (await this.claimAttempt(schedule, lease.tick.getTime(), lease.attempt + 1, now, complete === true));
      await this.files.discardAll(lease._id);
      await this.runs.abandon(lease._id, new Date(now));
      this.log.warn(
        { runId: lease._id, attempt: lease.attempt, retry: retry ? retry._id : null },
        "scheduled export lost with its replica",
      );
      if (schedule && retry) won.push({ schedule, run: retry });
    }
    return won;
  }

  private hold(run: RunDoc, log: FastifyBaseLogger): HeldLease {
    const controller = new AbortController();
    const renew = async () => {
      if (controller.signal.aborted) return;
      if (!(await this.runs.renew(run, new Date(this.now() + this.leaseMs)))) controller.abort(new LeaseLost());
    };
    // A failed renewal is retried at the next beat; only the lease's expiry hands the tick over.
    const timer = setInterval(
      () => renew().catch((error: unknown) => log.warn({ err: error }, "export run lease renewal failed")),
      this.leaseMs / 3,
    );
    return {
      signal: controller.signal,
      check: async () => {
        await renew();
        controller.signal.throwIfAborted();
      },
      stop: () => clearInterval(timer),
    };
  }

  private async execute(schedule: ScheduleDoc, run: RunDoc): Promise<RunDoc> {
    const log = this.log.child({
      tenantId: run.tenantId,
      scheduleId: run.scheduleId,
      runId: run._id,
      attempt: run.attempt,
    });
    const scope: ExportScope = {
      devices: schedule.devices,
      from: run.from.getTime(),
      to: run.to.getTime(),
      metrics: schedule.metrics ?? undefined,
      format: schedule.format,
    };
    const tally: ExportTally = { rows: 0, samples: 0, bytes: 0 };
    const lease = this.hold(run, log);
    let chunks: number | undefined;
    let error: unknown;
    try {
      chunks = await this.deliver(schedule, run, scope, tally, lease);
    } catch (failure) {
      error = failure;
    } finally {
      lease.stop();
    }
    if (lease.signal.aborted) {
      if (chunks !== undefined) await this.files.discard(run._id, chunks);
      log.warn("scheduled export stopped: another replica took its tick over");
      return { ...run, status: "failed", error: REPLICA_LOST };
    }
    const finishedAt = new Date(this.now());
    let outcome: RunOutcome;
    if (error === undefined) {
      outcome = {
        status: "succeeded",
        rows: tally.rows,
        bytes: tally.bytes,
        ...(chunks !== undefined && { chunks, expiresAt: new Date(finishedAt.getTime() + this.fileTtlMs) }),
      };
      log.info({ rows: tally.rows, bytes: tally.bytes }, "scheduled export delivered");
    } else {
      outcome = { status: "failed", error: failureOf(error) };
      log.warn({ error: outcome.error }, "scheduled export failed");
    }
    await this.runs.finish(run._id, outcome, finishedAt);
    if (outcome.status === "succeeded") {
      await this.events.publish(run.tenantId, "export.ready", run._id, {
        scheduleId: run.scheduleId,
        runId: run._id,
        destination: run.destination,
        rows: outcome.rows,
        fileUrl: chunks !== undefined ? `/api/exports/runs/${run._id}/file` : null,
        at: finishedAt.getTime(),
      });
    }
    return { ...run, ...outcome, finishedAt };
  }

  /** Sends the export where the schedule says; the stored chunk count for a download. */
  private async deliver(
    schedule: ScheduleDoc,
    run: RunDoc,
    scope: ExportScope,
    tally: ExportTally,
    lease: HeldLease,
  ): Promise<number | undefined> {
    // Opened before anything is exported: a replica with another SECRETS_KEY fails the run at once.
    const secret =
      schedule.destination.type === "webhook" && schedule.secret !== undefined
        ? this.secrets.open(schedule.secret)
        : undefined;
    // Samples journalled before the run started (by any replica) are applied before they are read.
    if (!(await this.telemetry.appliedBefore(run.startedAt, JOURNAL_WAIT_MS))) {
      this.log.warn({ runId: run._id }, "telemetry journal not applied in time; exporting what is applied");
    }
    const body = this.exporter.stream(run.tenantId, scope, tally);
    if (schedule.destination.type === "download") {
      const sink = this.files.sink(run.tenantId, run._id);
      try {
        await pipeline(body, sink, { signal: lease.signal });
        await lease.check();
      } catch (error) {
        await this.files.discard(run._id, sink.chunks());
        throw error;
      }
      return sink.chunks();
    }
    await this.webhooks.send({
      url: schedule.destination.url,
      secret,
      headers: {
        "content-type": CONTENT_TYPES[scope.format],
        "content-disposition": `attachment; filename="${exportFileName(scope)}"`,
        "x-kestrel-schedule": schedule._id,
        "x-kestrel-run": run._id,
        "x-kestrel-tick": String(run.tick.getTime()),
      },
      body,
      signal: lease.signal,
      beforeSend: lease.check,
    });
    return undefined;
  }
}
