// A local webhook receiver for the tests (scheduled exports, partner webhooks, alerts): records
// every POST and answers what `answer` says (default: /fail 500, /slow late, else 200); and the
// check a receiver makes on `Kestrel-Signature` (the receiver guide, docs/webhooks.md).

import { createHmac, timingSafeEqual } from "node:crypto";
import { createServer, type IncomingHttpHeaders, type Server } from "node:http";
import type { AddressInfo } from "node:net";

const SLOW_MS = 1500;

export interface Delivery {
  path: string;
  headers: IncomingHttpHeaders;
  body: string;
  /** performance.now() when the request's body had arrived. */
  at: number;
}

export interface Receiver {
  server: Server;
  url: string;
  deliveries: Delivery[];
  /** The status to answer a delivery with (and an optional delay); replaceable at any time. */
  answer: (delivery: Delivery) => { status: number; delayMs?: number };
  close(): Promise<void>;
}

export async function startReceiver(): Promise<Receiver> {
  const receiver: Receiver = {
    server: createServer((request, response) => {
      const parts: Buffer[] = [];
      request.on("data", (part: Buffer) => parts.push(part));
      request.on("end", () => {
        const delivery = {
          path: request.url ?? "",
          headers: request.headers,
          body: Buffer.concat(parts).toString("utf8"),
          at: performance.now(),
        };
        receiver.deliveries.push(delivery);
        const { status, delayMs = 0 } = receiver.answer(delivery);
        response.statusCode = status;
        setTimeout(() => response.end(status >= 300 ? "receiver says no" : "ok"), delayMs);
      });
    }),
    url: "",
    deliveries: [],
    answer: (delivery) => ({
      status: delivery.path === "/fail" ? 500 : 200,
      delayMs: delivery.path === "/slow" ? SLOW_MS : 0,
    }),
    close: () => new Promise((resolve) => receiver.server.close(() => resolve())),
  };
  await new Promise<void>((resolve) => receiver.server.listen(0, "127.0.0.1", resolve));
  receiver.url = `http://127.0.0.1:${(receiver.server.address() as AddressInfo).port}`;
  return receiver;
}

/** What a receiver does: recompute HMAC-SHA256 over `<t>.<raw body>`, compare, and refuse a stale t. */
export function signatureValid(
  headers: IncomingHttpHeaders,
  body: string,
  secret: string,
  toleranceS = Number.POSITIVE_INFINITY,
): boolean {
  const match = /^t=(\d+),v1=([0-9a-f]{64})$/.exec(String(headers["kestrel-signature"] ?? ""));
  if (!match) return false;
  const [, timestamp = "", signature = ""] = match;
  if (Math.abs(Date.now() / 1000 - Number(timestamp)) > toleranceS) return false;
  const expected = createHmac("sha256", secret).update(`${timestamp}.${body}`).digest();
  return timingSafeEqual(expected, Buffer.from(signature, "hex"));
}

/** A loopback URL nothing listens on (the port was free a moment ago): connections are refused. */
export async function closedUrl(): Promise<string> {
  const closed = createServer();
  await new Promise<void>((resolve) => closed.listen(0, "127.0.0.1", resolve));
  const url = `http://127.0.0.1:${(closed.address() as AddressInfo).port}/`;
  await new Promise<void>((resolve) => closed.close(() => resolve()));
  return url;
}
