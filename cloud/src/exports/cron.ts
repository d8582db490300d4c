// Schedule times from cron expressions (five fields, minute resolution, UTC), via cron-parser.

import { CronExpressionParser } from "cron-parser";

const FIELDS = 5;

/** Why the expression is not a five-field cron expression, or undefined when it is one. */
export function cronProblem(expression: string): string | undefined {
  if (expression.trim().split(/\s+/).length !== FIELDS) {
    return "cron must have five fields: minute hour day-of-month month day-of-week (UTC)";
  }
  try {
    CronExpressionParser.parse(expression, { tz: "UTC" });
    return undefined;
  } catch (error) {
    return `cron: ${(error as Error).message}`;
  }
}

/** The latest time at or before `now` the expression names, epoch ms. */
export function latestTick(expression: string, now: number): number {
  // prev() is strictly before currentDate, so a tick exactly at `now` counts.
  return CronExpressionParser.parse(expression, { tz: "UTC", currentDate: new Date(now + 1) })
    .prev()
    .getTime();
}

/** The first time after `now` the expression names, epoch ms. */
export function nextTick(expression: string, now: number): number {
  return CronExpressionParser.parse(expression, { tz: "UTC", currentDate: new Date(now) })
    .next()
    .getTime();
}
