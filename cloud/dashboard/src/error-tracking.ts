// Error tracking in the browser with @sentry/browser, when the cloud has a SENTRY_DSN: the
// dashboard asks /dashboard-config.json at start. Uncaught errors and rejections are reported with
// the secrets scrubbed as the cloud scrubs its own (the session token never leaves sessionStorage).

import { type ErrorEvent, init } from "@sentry/browser";
import { scrubText, scrubValue } from "../../src/observability/redaction.ts";

interface DashboardConfig {
  sentry: { dsn: string; environment: string } | null;
}

function scrub(event: ErrorEvent): ErrorEvent {
  const scrubbed = scrubValue(event) as ErrorEvent;
  if (scrubbed.message) scrubbed.message = scrubText(scrubbed.message);
  return scrubbed;
}

export async function startErrorTracking(): Promise<void> {
  const response = await fetch("/dashboard-config.json");
  if (!response.ok) return;
  const { sentry } = (await response.json()) as DashboardConfig;
  if (!sentry) return;
  init({ dsn: sentry.dsn, environment: sentry.environment, beforeSend: scrub });
}
