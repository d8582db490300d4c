// The gateway's HTTP side: /healthz (JSON), /metrics (Prometheus text) and /log-level (the log
// level, changed at run time with the operations token), from one process's gateway or from all
// the workers of one (cluster.ts).

import { timingSafeEqual } from "node:crypto";
import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { Logger } from "pino";
import { type GatewayConfig, LOG_LEVELS } from "./config.ts";
import { listen } from "./servers.ts";

export interface GatewayHealth {
  status: "ok";
  clients: number;
  queued: number;
  oldestQueuedAgeMs: number;
  /** Processes answering for the gateway (GATEWAY_WORKERS), when more than one. */
  workers?: number;
}

export interface HealthSource {
  health(): Promise<GatewayHealth>;
  renderMetrics(): Promise<string>;
  /** Every process of the gateway logs at this level from now on. */
  setLogLevel(level: string): Promise<void>;
}

function answer(response: ServerResponse, status: number, body: object): void {
  const problem = status >= 400;
  response.writeHead(status, { "content-type": problem ? "application/problem+json" : "application/json" });
  response.end(JSON.stringify(body));
}

/** GET or PUT {"level": "debug"} with `Authorization: Bearer <OPS_TOKEN>`: the log level, changed at run time. */
async function serveLogLevel(
  request: IncomingMessage,
  response: ServerResponse,
  logger: Logger,
  source: HealthSource,
  opsToken: string | undefined,
): Promise<void> {
  const given = Buffer.from(request.headers.authorization ?? "");
  const expected = Buffer.from(`Bearer ${opsToken}`);
  if (opsToken === undefined || given.length !== expected.length || !timingSafeEqual(given, expected)) {
    return answer(response, 401, { type: "about:blank", title: "Unauthorized", status: 401, code: "unauthenticated" });
  }
  if (request.method === "PUT") {
    let body = "";
    for await (const chunk of request) {
      body += chunk;
      if (body.length > 1024) break;
    }
    let level: unknown;
    try {
      level = (JSON.parse(body) as { level?: unknown }).level;
    } catch {
      level = undefined;
    }
    if (typeof level !== "string" || !LOG_LEVELS.includes(level)) {
      const detail = `level must be one of ${LOG_LEVELS.join(", ")}`;
      return answer(response, 400, {
        type: "about:blank",
        title: "Bad Request",
        status: 400,
        code: "invalid_request",
        detail,
      });
    }
    const from = logger.level;
    await source.setLogLevel(level);
    logger.warn({ from, to: level }, "log level changed");
  }
  answer(response, 200, { level: logger.level });
}

export async function serveHealth(
  config: Pick<GatewayConfig, "httpHost" | "httpPort" | "opsToken">,
  source: HealthSource,
  logger: Logger,
): Promise<{ server: Server; port: number }> {
  const server = createHttpServer((request, response) => {
    const answer = async () => {
      if (request.method === "GET" && request.url === "/healthz") {
        const health = await source.health();
        response.writeHead(200, { "content-type": "application/json" });
        response.end(JSON.stringify(health));
      } else if (request.method === "GET" && request.url === "/metrics") {
        const text = await source.renderMetrics();
        response.writeHead(200, { "content-type": "text/plain; version=0.0.4; charset=utf-8" });
        response.end(text);
      } else if (request.url === "/log-level" && (request.method === "GET" || request.method === "PUT")) {
        await serveLogLevel(request, response, logger, source, config.opsToken);
      } else {
        response.writeHead(404, { "content-type": "application/problem+json" });
        response.end(JSON.stringify({ type: "about:blank", title: "Not Found", status: 404, code: "not_found" }));
      }
    };
    answer().catch((error: unknown) => {
      logger.error({ err: error instanceof Error ? error.message : String(error) }, "health or metrics request failed");
      if (!response.headersSent) response.writeHead(500, { "content-type": "application/problem+json" });
      response.end(JSON.stringify({ type: "about:blank", title: "Internal Server Error", status: 500 }));
    });
  });
  const port = await listen(server, config.httpPort, config.httpHost);
  return { server, port };
}
