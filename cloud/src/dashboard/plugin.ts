// Serves the operator dashboard, the esbuild bundle in cloud/dashboard/dist,
// at `/`. Without a build it answers with a problem saying how to make one.

import { access } from "node:fs/promises";
import { join } from "node:path";
import fastifyStatic from "@fastify/static";
import type { FastifyInstance } from "fastify";
import { sendProblem } from "../http/problem.ts";

export interface DashboardOptions {
  dir: string;
  /** Where the browser SDK sends error reports (the Sentry DSN), allowed by the page's connect-src. */
  sentryDsn?: string | undefined;
}

// ApexCharts sets inline styles on its SVG, hence 'unsafe-inline' for styles only.
function contentSecurityPolicy(sentryDsn: string | undefined): string {
  return [
    "default-src 'self'",
    `connect-src 'self'${sentryDsn ? ` ${new URL(sentryDsn).origin}` : ""}`,
    "style-src 'self' 'unsafe-inline'",
    "img-src 'self' data:",
    "object-src 'none'",
    "base-uri 'none'",
    "frame-ancestors 'none'",
  ].join("; ");
}

export async function dashboardPlugin(app: FastifyInstance, options: DashboardOptions): Promise<void> {
  const policy = contentSecurityPolicy(options.sentryDsn);
  try {
    await access(join(options.dir, "index.html"));
  } catch {
    app.log.warn({ dir: options.dir }, "dashboard not built: run `npm run build -w cloud`");
    app.get("/", (_request, reply) =>
      sendProblem(reply, 503, "dashboard_not_built", "the dashboard is not built: run `npm run build -w cloud`"),
    );
    return;
  }
  await app.register(fastifyStatic, {
    root: options.dir,
    prefix: "/",
    setHeaders: (response) => {
      // Replaces the API's deny-all policy (security-headers.ts) for the dashboard's own files.
      response.setHeader("content-security-policy", policy);
    },
  });
}
