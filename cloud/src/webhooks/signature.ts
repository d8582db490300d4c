// The one webhook signer, for partner event deliveries and scheduled exports alike:
// `Kestrel-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>`. The timestamp
// is inside the signed text, so a receiver that checks it against its clock refuses replays.

import { createHmac } from "node:crypto";

export const SIGNATURE_HEADER = "kestrel-signature";

/** The header value for a body given whole or as chunks (a spooled file's stream). */
export async function signatureHeader(
  secret: string,
  timestampS: number,
  body: Buffer | string | AsyncIterable<Buffer | string>,
): Promise<string> {
  const hmac = createHmac("sha256", secret).update(`${timestampS}.`);
  if (typeof body === "string" || Buffer.isBuffer(body)) hmac.update(body);
  else for await (const chunk of body) hmac.update(chunk);
  return `t=${timestampS},v1=${hmac.digest("hex")}`;
}
