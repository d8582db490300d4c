// A stand-in for the cloud's command API (plus device-auth and ingest, which every
// gateway calls), so relay tests can queue commands and observe the acks that come back.

import { createServer, type IncomingMessage, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import type { CommandAck, DeviceCommand, IngestRequest } from "@kestrel/wire";

export interface RelayedAck {
  deviceId: string;
  receivedAt: number;
  ack: CommandAck;
}

export interface CommandPeer {
  url: string;
  gatewayKey: string;
  /** Commands waiting for a poll that names their device. */
  queued: Array<{ deviceId: string; command: DeviceCommand }>;
  /** The device lists the gateway polled with. */
  polls: string[][];
  acks: RelayedAck[];
  /** The gateway's reports of what it did with each command (published, handed back). */
  deliveries: Array<{ deviceId: string; delivery: { id: string; outcome: string } }>;
  ackAttempts: number;
  ingests: IngestRequest[];
  /** While set, the ack route answers this status. */
  failAcksWith: number | undefined;
  /** While set, the ingest route answers this status. */
  failIngestWith: number | undefined;
  close(): Promise<void>;
}

async function readBody(request: IncomingMessage): Promise<Record<string, unknown>> {
  let body = "";
  for await (const chunk of request) body += chunk;
  return JSON.parse(body) as Record<string, unknown>;
}

export async function startCommandPeer(devices: Record<string, string>): Promise<CommandPeer> {
  const gatewayKey = "test-gateway-key-0123456789";
  const peer: CommandPeer = {
    url: "",
    gatewayKey,
    queued: [],
    polls: [],
    acks: [],
    deliveries: [],
    ackAttempts: 0,
    ingests: [],
    failAcksWith: undefined,
    failIngestWith: undefined,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
  const server: Server = createServer(async (request, response) => {
    const answer = (status: number, payload: object) => {
      if (response.destroyed) return;
      response.writeHead(status, { "content-type": "application/json" });
      response.end(JSON.stringify(payload));
    };
    if (request.headers.authorization !== `Bearer ${gatewayKey}`) {
      return answer(401, { code: "gateway_auth_failed" });
    }
    const json = await readBody(request);
    switch (request.url) {
      case "/api/gateway/v1/device-auth": {
        const ok = typeof json.deviceId === "string" && devices[json.deviceId] === json.token;
        return ok
          ? answer(200, { deviceId: json.deviceId, tenantId: "tenant-1" })
          : answer(401, { code: "device_auth_failed" });
      }
      case "/api/gateway/v1/ingest":
        if (peer.failIngestWith !== undefined) return answer(peer.failIngestWith, { code: "unavailable" });
        peer.ingests.push(json as unknown as IngestRequest);
        return answer(200, { accepted: 0, rejected: [] });
      case "/api/gateway/v1/commands/poll": {
        const wanted = json.devices as string[];
        peer.polls.push(wanted);
        const deadline = Date.now() + (json.wait as number) * 1000;
        while (!response.destroyed) {
          const ready = peer.queued.filter((item) => wanted.includes(item.deviceId));
          if (ready.length > 0 || Date.now() >= deadline) {
            peer.queued = peer.queued.filter((item) => !ready.includes(item));
            return answer(200, { commands: ready });
          }
          await new Promise((resolve) => setTimeout(resolve, 20));
        }
        return;
      }
      case "/api/gateway/v1/command-acks": {
        peer.ackAttempts++;
        if (peer.failAcksWith !== undefined) return answer(peer.failAcksWith, { code: "unavailable" });
        const items = json.acks as Array<RelayedAck | CommandPeer["deliveries"][number]>;
        for (const item of items) {
          if ("delivery" in item) peer.deliveries.push(item);
          else peer.acks.push(item);
        }
        return answer(200, { applied: items.length, ignored: 0, rejected: [] });
      }
      default:
        return answer(404, { code: "not_found" });
    }
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  peer.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return peer;
}
