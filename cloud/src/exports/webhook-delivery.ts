// Delivers an export to a webhook. The body is spooled to a temp file first, because the signature
// (HMAC-SHA256 over `<t>.<body>`, header `Kestrel-Signature: t=<unix s>,v1=<hex>`) covers the whole
// body and goes in the headers; memory still holds one chunk. Then one POST, redirects not followed,
// every connection checked by WebhookEgress.

import { createHmac } from "node:crypto";
import { createReadStream, createWriteStream } from "node:fs";
import { mkdtemp, rm, stat } from "node:fs/promises";
import { request as httpRequest, type IncomingMessage } from "node:http";
import { request as httpsRequest } from "node:https";
import { join } from "node:path";
import type { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { type WebhookEgress, WebhookRefused } from "./webhook-egress.ts";

const SIGNATURE_HEADER = "kestrel-signature";

export interface WebhookRequest {
  url: string;
  /** The schedule's signing secret; schedules made before signing existed have none. */
  secret: string | undefined;
  headers: Record<string, string>;
  body: Readable;
  /** Aborts spooling and sending (the run's lease was lost). */
  signal: AbortSignal;
  /** Called once the body is spooled, right before the POST: throws to call the delivery off. */
  beforeSend: () => Promise<void>;
}

async function signatureOf(secret: string, timestamp: number, file: string): Promise<string> {
  const hmac = createHmac("sha256", secret).update(`${timestamp}.`);
  for await (const chunk of createReadStream(file)) hmac.update(chunk as Buffer);
  return hmac.digest("hex");
}

export class WebhookSender {
  constructor(
    private readonly egress: WebhookEgress,
    private readonly spoolDir: string,
    private readonly timeoutMs: number,
    private readonly now: () => number,
  ) {}

  async send(delivery: WebhookRequest): Promise<void> {
    const refused = this.egress.urlProblem(delivery.url);
    if (refused !== undefined) throw new WebhookRefused(refused);
    const dir = await mkdtemp(join(this.spoolDir, "kestrel-export-"));
    const file = join(dir, "body");
    try {
      await pipeline(delivery.body, createWriteStream(file, { mode: 0o600 }), { signal: delivery.signal });
      const headers = { ...delivery.headers, "content-length": String((await stat(file)).size) };
      if (delivery.secret !== undefined) {
        // Signed when sent, not when spooled, so a receiver's freshness check does not count the export's time.
        const timestamp = Math.floor(this.now() / 1000);
        const signature = await signatureOf(delivery.secret, timestamp, file);
        Object.assign(headers, { [SIGNATURE_HEADER]: `t=${timestamp},v1=${signature}` });
      }
      await delivery.beforeSend();
      const status = await this.post(new URL(delivery.url), file, headers, delivery.signal);
      if (status < 200 || status > 299) throw new Error(`webhook answered HTTP ${status}`);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }

  private async post(url: URL, file: string, headers: Record<string, string>, signal: AbortSignal): Promise<number> {
    const timeout = AbortSignal.timeout(this.timeoutMs);
    const request = (url.protocol === "https:" ? httpsRequest : httpRequest)(url, {
      method: "POST",
      headers,
      lookup: this.egress.lookup,
      signal: AbortSignal.any([signal, timeout]),
    });
    const answered = new Promise<IncomingMessage>((resolve, reject) => {
      request.once("response", resolve);
      request.once("error", reject);
    });
    try {
      const [, response] = await Promise.all([pipeline(createReadStream(file), request), answered]);
      response.resume();
      return response.statusCode ?? 0;
    } catch (error) {
      if (signal.aborted) throw signal.reason;
      if (timeout.aborted) throw new Error(`webhook did not answer within ${this.timeoutMs / 1000} s`);
      if (error instanceof WebhookRefused) throw error;
      throw new Error("webhook request failed", { cause: error });
    }
  }
}
