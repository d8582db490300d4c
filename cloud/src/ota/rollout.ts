// The rules of a staged rollout, free of storage: which stage each device belongs to, and what a
// stage's device counts mean for the campaign (halt, keep going, soak, advance).

import { createHash } from "node:crypto";
import type { ArtifactStatus } from "@kestrel/wire/artifacts";

/** A device's place in a campaign: pending until offered, then what it reported last. */
export type DeviceRolloutStatus = "pending" | ArtifactStatus;

export const TERMINAL: ReadonlySet<DeviceRolloutStatus> = new Set(["confirmed", "failed", "rolled-back"]);

export interface Stage {
  /** Cumulative share of the campaign's devices updated once this stage is done, 1..100. */
  percent: number;
  /** How long the stage's results must hold (no halt) before the next stage starts. */
  soakSeconds: number;
}

export interface Thresholds {
  /** Halt when more than this share of a stage's devices failed (0..1). */
  failureRate: number;
  /** Halt when more than this share of a stage's devices rolled back (0..1). */
  rollbackRate: number;
  /** Halt when more than this share reset by watchdog more often after the update than before (0..1). */
  watchdogRate: number;
}

/**
 * Stage index per device: a shuffle seeded by the campaign id (so stage 1 is not always the same
 * devices), then stage k takes the devices up to ceil(N × percent_k / 100) in that order.
 */
export function assignStages(
  campaignId: string,
  deviceIds: readonly string[],
  stages: readonly Stage[],
): Map<string, number> {
  const order = [...new Set(deviceIds)]
    .map((deviceId) => ({ deviceId, rank: createHash("sha256").update(`${campaignId}|${deviceId}`).digest("hex") }))
    .sort((a, b) => (a.rank < b.rank ? -1 : a.rank > b.rank ? 1 : 0));
  const assigned = new Map<string, number>();
  let stage = 0;
  order.forEach(({ deviceId }, index) => {
    while (stage < stages.length - 1 && index >= Math.ceil((order.length * (stages[stage] as Stage).percent) / 100))
      stage++;
    assigned.set(deviceId, stage);
  });
  return assigned;
}

/** What the current stage's devices look like now. */
export interface StageTally {
  devices: number;
  byStatus: Partial<Record<DeviceRolloutStatus, number>>;
  /**
   * Unfinished devices with no news for longer than the device timeout (never reached since the
   * stage started, or silent since their last report): they do not hold the stage back, and get
   * the offer again whenever their gateway sees them.
   */
  stalled: number;
  /** Confirmed devices that reset by watchdog more since the update than in as long before it. */
  regressed: number;
}

export type StageVerdict =
  | { kind: "halt"; reason: string }
  /** Devices still working: nothing to do. */
  | { kind: "running" }
  /** Every reachable device finished; soak until `until` (epoch ms). */
  | { kind: "soaking"; until: number }
  | { kind: "advance" };

function percent(rate: number): string {
  return `${Math.round(rate * 1000) / 10}%`;
}

/**
 * The verdict for the current stage. `doneAt`: when the stage's reachable devices had all finished
 * (undefined while some still work), so the soak counts from then.
 */
export function judgeStage(
  stage: { index: number; soakSeconds: number },
  tally: StageTally,
  thresholds: Thresholds,
  doneAt: number | undefined,
  now: number,
): StageVerdict {
  const count = (status: DeviceRolloutStatus) => tally.byStatus[status] ?? 0;
  const n = tally.devices;
  const label = `stage ${stage.index + 1}`;
  if (n > 0) {
    const failed = count("failed") / n;
    if (failed > thresholds.failureRate)
      return {
        kind: "halt",
        reason: `${label}: ${count("failed")} of ${n} devices failed (${percent(failed)} > ${percent(thresholds.failureRate)})`,
      };
    const rolledBack = count("rolled-back") / n;
    if (rolledBack > thresholds.rollbackRate)
      return {
        kind: "halt",
        reason: `${label}: ${count("rolled-back")} of ${n} devices rolled back (${percent(rolledBack)} > ${percent(thresholds.rollbackRate)})`,
      };
    const regressed = tally.regressed / n;
    if (regressed > thresholds.watchdogRate)
      return {
        kind: "halt",
        reason: `${label}: ${tally.regressed} of ${n} updated devices reset by watchdog more than before the update (${percent(regressed)} > ${percent(thresholds.watchdogRate)})`,
      };
  }
  if (!stageFinished(tally) || doneAt === undefined) return { kind: "running" };
  const until = doneAt + stage.soakSeconds * 1000;
  return now >= until ? { kind: "advance" } : { kind: "soaking", until };
}

/** Whether every device of the stage finished or stalled. */
export function stageFinished(tally: StageTally): boolean {
  let finished = tally.stalled;
  for (const status of TERMINAL) finished += tally.byStatus[status] ?? 0;
  return finished >= tally.devices;
}
