// One POST to a webhook, for partner deliveries and scheduled exports: every connection checked by
// WebhookEgress (also each address DNS gives), redirects not followed, a deadline, and what the
// receiver answered (status, latency, the start of its body for the delivery log).

import { request as httpRequest, type IncomingMessage } from "node:http";
import { request as httpsRequest } from "node:https";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { type WebhookEgress, WebhookRefused } from "./egress.ts";

/** How much of a receiver's answer is kept for the delivery log. */
export const SNIPPET_BYTES = 512;

export interface WebhookAnswer {
  status: number;
  latencyMs: number;
  /** The first SNIPPET_BYTES of the answer's body, as text. */
  snippet: string;
}

/** The receiver did not answer in time; its message says how long it had. */
export class WebhookTimeout extends Error {
  readonly code = "webhook_timeout";
}

async function readSnippet(response: IncomingMessage): Promise<string> {
  const parts: Buffer[] = [];
  let kept = 0;
  for await (const chunk of response as AsyncIterable<Buffer>) {
    if (kept < SNIPPET_BYTES) {
      parts.push(chunk.subarray(0, SNIPPET_BYTES - kept));
      kept += Math.min(chunk.length, SNIPPET_BYTES - kept);
    }
  }
  return Buffer.concat(parts).toString("utf8");
}

export class WebhookPoster {
  constructor(
    readonly egress: WebhookEgress,
    private readonly timeoutMs: number,
  ) {}

  /** POSTs the body; throws WebhookRefused, WebhookTimeout, the signal's reason, or a request failure. */
  async post(
    url: string,
    headers: Record<string, string>,
    body: Buffer | Readable,
    signal?: AbortSignal,
  ): Promise<WebhookAnswer> {
    const refused = this.egress.urlProblem(url);
    if (refused !== undefined) throw new WebhookRefused(refused);
    const target = new URL(url);
    const timeout = AbortSignal.timeout(this.timeoutMs);
    const started = performance.now();
    const request = (target.protocol === "https:" ? httpsRequest : httpRequest)(target, {
      method: "POST",
      headers,
      lookup: this.egress.lookup,
      signal: signal ? AbortSignal.any([signal, timeout]) : timeout,
    });
    const answered = new Promise<IncomingMessage>((resolve, reject) => {
      request.once("response", resolve);
      request.once("error", reject);
    });
    try {
      const source = Buffer.isBuffer(body) ? Readable.from([body]) : body;
      const [, response] = await Promise.all([pipeline(source, request), answered]);
      const snippet = await readSnippet(response);
      return { status: response.statusCode ?? 0, latencyMs: performance.now() - started, snippet };
    } catch (error) {
      if (signal?.aborted) throw signal.reason;
      if (timeout.aborted) throw new WebhookTimeout(`webhook did not answer within ${this.timeoutMs / 1000} s`);
      if (error instanceof WebhookRefused) throw error;
      throw new Error("webhook request failed", { cause: error });
    }
  }
}
