// A stand-in for the cloud's gateway API, so gateway tests can observe exactly
// what the gateway sends and make the cloud fail on demand. The real cloud is
// exercised by the end-to-end tests in tools/.

import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import type { IngestRequest } from "@kestrel/wire";

export interface CloudPeer {
  url: string;
  gatewayKey: string;
  ingests: IngestRequest[];
  authCalls: number;
  /** While set, every request answers this status. */
  failWith: number | undefined;
  /** While set, ingest requests (only) answer this status. */
  failIngestWith: number | undefined;
  /** The gateway's uplink progress reports, in arrival order. */
  uplinkReports: Array<{ gatewayId: string; uplink: { pending: number; oldestAt: number | null; at: number } }>;
  /** Devices' artifact status reports relayed by the gateway, in arrival order. */
  artifactReports: Array<{ deviceId: string; receivedAt: number; report: Record<string, unknown> }>;
  close(): Promise<void>;
}

export async function startCloudPeer(devices: Record<string, string>): Promise<CloudPeer> {
  const gatewayKey = "test-gateway-key-0123456789";
  const peer: CloudPeer = {
    url: "",
    gatewayKey,
    ingests: [],
    authCalls: 0,
    failWith: undefined,
    failIngestWith: undefined,
    uplinkReports: [],
    artifactReports: [],
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
  const server: Server = createServer((request, response) => {
    let body = "";
    request.on("data", (chunk) => {
      body += chunk;
    });
    request.on("end", () => {
      const answer = (status: number, payload: object) => {
        response.writeHead(status, { "content-type": "application/json" });
        response.end(JSON.stringify(payload));
      };
      if (peer.failWith !== undefined) return answer(peer.failWith, { code: "unavailable", detail: "test outage" });
      if (request.headers.authorization !== `Bearer ${gatewayKey}`) {
        return answer(401, { code: "gateway_auth_failed", detail: "bad gateway key" });
      }
      const json = JSON.parse(body) as Record<string, unknown>;
      if (request.url === "/api/gateway/v1/device-auth") {
        peer.authCalls++;
        const ok = typeof json.deviceId === "string" && devices[json.deviceId] === json.token;
        return ok
          ? answer(200, { deviceId: json.deviceId, tenantId: "tenant-1" })
          : answer(401, { code: "device_auth_failed", detail: "no" });
      }
      if (request.url === "/api/gateway/v1/uplink-status") {
        peer.uplinkReports.push(json as unknown as CloudPeer["uplinkReports"][number]);
        response.writeHead(204);
        return response.end();
      }
      if (request.url === "/api/gateway/v1/artifact-reports") {
        const reports = json.reports as CloudPeer["artifactReports"];
        peer.artifactReports.push(...reports);
        return answer(200, { applied: reports.length, ignored: 0, rejected: [] });
      }
      if (request.url === "/api/gateway/v1/ingest") {
        if (peer.failIngestWith !== undefined) {
          return answer(peer.failIngestWith, { code: "unavailable", detail: "test outage" });
        }
        const ingest = json as unknown as IngestRequest;
        peer.ingests.push(ingest);
        const accepted = ingest.telemetry.reduce((n, t) => n + t.batch.samples.length, 0);
        return answer(200, { accepted, rejected: [] });
      }
      answer(404, { code: "not_found" });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  peer.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return peer;
}
