// Error tracking with Sentry (@sentry/node) when SENTRY_DSN is set: 5xx answers and the process's
// unhandled errors, tagged with the request id, organization and device, secrets scrubbed before
// anything is sent (redaction.ts). A client of its own per app rather than Sentry's global one, so
// several apps in one process (the tests, the local platform) each report to their own DSN.

import { defaultStackParser, type ErrorEvent, makeNodeTransport, NodeClient, Scope } from "@sentry/node";
import { scrubText, scrubValue } from "./redaction.ts";

export interface ErrorContext {
  requestId?: string;
  tenantId?: string;
  deviceId?: string;
  method?: string;
  /** The route's pattern (never the raw URL). */
  route?: string;
  statusCode?: number;
}

/** Every string of the event scrubbed, every secret-named field redacted. */
export function scrubEvent(event: ErrorEvent): ErrorEvent {
  const scrubbed = scrubValue(event) as ErrorEvent;
  if (scrubbed.message) scrubbed.message = scrubText(scrubbed.message);
  return scrubbed;
}

export class ErrorTracker {
  private constructor(private readonly client: NodeClient) {}

  /** A tracker for the DSN, or undefined without one (then nothing is reported). */
  static create(dsn: string | undefined, environment: string, release?: string): ErrorTracker | undefined {
    if (!dsn) return undefined;
    const client = new NodeClient({
      dsn,
      environment,
      ...(release && { release }),
      transport: makeNodeTransport,
      stackParser: defaultStackParser,
      // No integrations: no request data, IP addresses or cookies are collected; only what capture() attaches.
      integrations: [],
      beforeSend: scrubEvent,
    });
    client.init();
    return new ErrorTracker(client);
  }

  capture(error: unknown, context: ErrorContext = {}): void {
    const scope = new Scope();
    scope.setClient(this.client);
    if (context.requestId) scope.setTag("request_id", context.requestId);
    if (context.tenantId) scope.setTag("organization", context.tenantId);
    if (context.deviceId) scope.setTag("device_id", context.deviceId);
    if (context.route) scope.setTag("route", context.route);
    if (context.statusCode) scope.setTag("status_code", String(context.statusCode));
    if (context.method && context.route) {
      scope.setContext("request", { method: context.method, route: context.route });
    }
    scope.captureException(error);
  }

  /** Waits until what was captured is sent (or the timeout passes): before the process exits. */
  async flush(timeoutMs = 2000): Promise<boolean> {
    return await this.client.flush(timeoutMs);
  }

  async close(timeoutMs = 2000): Promise<boolean> {
    return await this.client.close(timeoutMs);
  }
}
