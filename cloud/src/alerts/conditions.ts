// The alert conditions as pure state machines: given a rule's state and a new value at a time,
// the next state and whether it fired or resolved. No I/O, so every rule kind's behaviour (fire,
// hold, hysteresis, flapping) is tested on its own and evaluated the same wherever it runs.

export type ThresholdOp = "above" | "below" | "outside";

/** A level crossing held for a duration, cleared only back past the clear level (hysteresis). */
export interface LevelCondition {
  op: ThresholdOp;
  /** Fires below this (below, outside). */
  low?: number;
  /** Fires above this (above, outside). */
  high?: number;
  /** Clears at or above this (below, outside); defaults to low. */
  clearLow?: number;
  /** Clears at or below this (above, outside); defaults to high. */
  clearHigh?: number;
  /** How long the value must stay past the line before the alert fires; 0 fires at once. */
  forSeconds: number;
}

export interface RateCondition {
  /** Fires when the value changes faster than this, per minute, over the window. */
  perMinute: number;
  direction: "rise" | "fall" | "either";
  windowSeconds: number;
  /** Clears once the rate is at or under this; defaults to half of perMinute. */
  clearPerMinute?: number;
}

export type RuleStatus = "ok" | "pending" | "firing";

export interface RuleState {
  status: RuleStatus;
  /** When the current status began (device time for sample rules). */
  since: number;
  /** The latest time evaluated; a sample much older than it is late (the evaluator's tolerance). */
  lastTs: number;
  /** Alerts fired so far for this rule and subject: names the next alert. */
  episode: number;
  /** The open alert, while firing. */
  alertId: string | null;
  /**
   * Rate rules: recent points inside the window. Objects, not [time, value] pairs: the state is
   * stored, and FerretDB refuses nested arrays.
   */
  points?: RatePoint[];
}

export interface RatePoint {
  at: number;
  value: number;
}

export type Transition = "fired" | "resolved" | null;

export interface Step {
  state: RuleState;
  transition: Transition;
}

export function initialState(): RuleState {
  // Finite, to be storable (FerretDB refuses infinities); sample times are after 2000, so 0 is before them all.
  return { status: "ok", since: 0, lastTs: 0, episode: 0, alertId: null };
}

/** Why a level condition is inconsistent, or undefined. */
export function levelProblem(c: LevelCondition): string | undefined {
  const needsLow = c.op !== "above";
  const needsHigh = c.op !== "below";
  if (needsLow !== (c.low !== undefined)) return needsLow ? `op ${c.op} needs low` : `op ${c.op} takes no low`;
  if (needsHigh !== (c.high !== undefined)) return needsHigh ? `op ${c.op} needs high` : `op ${c.op} takes no high`;
  if (c.clearLow !== undefined && (c.low === undefined || c.clearLow < c.low))
    return "clearLow must be at or above low";
  if (c.clearHigh !== undefined && (c.high === undefined || c.clearHigh > c.high)) {
    return "clearHigh must be at or below high";
  }
  if (c.op === "outside" && (c.low ?? 0) >= (c.high ?? 0)) return "low must be below high";
  if (c.op === "outside" && (c.clearLow ?? c.low ?? 0) > (c.clearHigh ?? c.high ?? 0)) {
    return "clearLow must not be above clearHigh";
  }
  return undefined;
}

function breaches(c: LevelCondition, value: number): boolean {
  return (c.low !== undefined && value < c.low) || (c.high !== undefined && value > c.high);
}

function clears(c: LevelCondition, value: number): boolean {
  const low = c.clearLow ?? c.low;
  const high = c.clearHigh ?? c.high;
  return (low === undefined || value >= low) && (high === undefined || value <= high);
}

/**
 * One value at time `at`. ok → pending when the value goes past the line (→ firing at once when
 * forSeconds is 0); pending → firing once it has stayed past the line for forSeconds, or back to
 * ok as soon as it does not; firing → ok (resolved) only when the value is back inside the clear
 * levels, so a value hovering at the line neither resolves nor fires again.
 */
export function stepLevel(c: LevelCondition, state: RuleState, value: number, at: number): Step {
  const next = { ...state, lastTs: Math.max(state.lastTs, at) };
  if (state.status === "firing") {
    return clears(c, value)
      ? { state: { ...next, status: "ok", since: at, alertId: null }, transition: "resolved" }
      : { state: next, transition: null };
  }
  if (!breaches(c, value)) {
    return { state: state.status === "ok" ? next : { ...next, status: "ok", since: at }, transition: null };
  }
  const breachSince = state.status === "pending" ? state.since : at;
  if (at - breachSince >= c.forSeconds * 1000) {
    return { state: { ...next, status: "firing", since: at, episode: state.episode + 1 }, transition: "fired" };
  }
  return { state: { ...next, status: "pending", since: breachSince }, transition: null };
}

/**
 * The window is kept as points at least a slot apart (and the newest): the rate is measured from the
 * oldest point inside the window, so it spans at least (slots - 1) / slots of the window. The state
 * holds about `RATE_SLOTS` + 2 points whatever the sample rate (it is written on most passes).
 */
const RATE_SLOTS = 8;

/** Change per minute over the window's points, oriented by direction; null with fewer than two points. */
function rateOf(c: RateCondition, points: RatePoint[]): number | null {
  const first = points[0];
  const last = points.at(-1);
  if (!first || !last || last.at <= first.at) return null;
  const perMinute = ((last.value - first.value) / (last.at - first.at)) * 60_000;
  if (c.direction === "rise") return perMinute;
  if (c.direction === "fall") return -perMinute;
  return Math.abs(perMinute);
}

/** One value at time `at` for a rate-of-change rule: the rate over the window, with hysteresis like a level. */
export function stepRate(
  c: RateCondition,
  state: RuleState,
  value: number,
  at: number,
): Step & { rate: number | null } {
  const windowStart = at - c.windowSeconds * 1000;
  const inWindow = (state.points ?? []).filter((point) => point.at >= windowStart);
  inWindow.push({ at, value });
  // A sample a little out of order takes its place in time.
  inWindow.sort((a, b) => a.at - b.at);
  // The oldest point inside the window stays: it is the base the rate is measured from.
  const slot = (c.windowSeconds * 1000) / RATE_SLOTS;
  const points: RatePoint[] = [];
  for (const [i, point] of inWindow.entries()) {
    const previous = points.at(-1);
    if (!previous || point.at - previous.at >= slot || i === inWindow.length - 1) points.push(point);
  }
  const rate = rateOf(c, points);
  const level: LevelCondition = {
    op: "above",
    high: c.perMinute,
    clearHigh: c.clearPerMinute ?? c.perMinute / 2,
    forSeconds: 0,
  };
  const step =
    rate === null ? { state: { ...state, lastTs: at }, transition: null } : stepLevel(level, state, rate, at);
  return { ...step, state: { ...step.state, points }, rate };
}
