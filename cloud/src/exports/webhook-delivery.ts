// Delivers an export to a webhook. The body is spooled to a temp file first, because the signature
// (cloud/src/webhooks/signature.ts) covers the whole body and goes in the headers; memory still
// holds one chunk. Then one POST through the webhooks' poster (egress guard, no redirects).

import { createReadStream, createWriteStream } from "node:fs";
import { mkdtemp, rm, stat } from "node:fs/promises";
import { join } from "node:path";
import type { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import type { WebhookPoster } from "../webhooks/http-post.ts";
import { SIGNATURE_HEADER, signatureHeader } from "../webhooks/signature.ts";

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

export class WebhookSender {
  constructor(
    private readonly poster: WebhookPoster,
    private readonly spoolDir: string,
    private readonly now: () => number,
  ) {}

  async send(delivery: WebhookRequest): Promise<void> {
    const dir = await mkdtemp(join(this.spoolDir, "kestrel-export-"));
    const file = join(dir, "body");
    try {
      await pipeline(delivery.body, createWriteStream(file, { mode: 0o600 }), { signal: delivery.signal });
      const headers = { ...delivery.headers, "content-length": String((await stat(file)).size) };
      if (delivery.secret !== undefined) {
        // Signed when sent, not when spooled, so a receiver's freshness check does not count the export's time.
        const timestamp = Math.floor(this.now() / 1000);
        Object.assign(headers, {
          [SIGNATURE_HEADER]: await signatureHeader(delivery.secret, timestamp, createReadStream(file)),
        });
      }
      await delivery.beforeSend();
      const { status } = await this.poster.post(delivery.url, headers, createReadStream(file), delivery.signal);
      if (status < 200 || status > 299) throw new Error(`webhook answered HTTP ${status}`);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }
}
