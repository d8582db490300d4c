// The gateway's HTTP side: /healthz (JSON) and /metrics (Prometheus text), from one process's
// gateway or from all the workers of one (cluster.ts).

import { createServer as createHttpServer, type Server } from "node:http";
import type { Logger } from "pino";
import type { GatewayConfig } from "./config.ts";
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
}

export async function serveHealth(
  config: Pick<GatewayConfig, "httpHost" | "httpPort">,
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
        response.writeHead(200, { "content-type": "text/plain; version=0.0.4" });
        response.end(text);
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
