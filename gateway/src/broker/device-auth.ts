// Checks a device's MQTT credentials against the cloud and caches positive
// answers for a short time, so reconnect storms do not hammer the cloud. Only a
// hash of the token is kept in memory.

import { createHash, timingSafeEqual } from "node:crypto";
import type { CloudClient } from "../uplink/cloud-client.ts";

interface CachedGrant {
  tokenHash: Buffer;
  tenantId: string;
  expiresAt: number;
}

export type AuthDecision = { ok: true; tenantId: string; cached: boolean } | { ok: false; reason: "denied" };

function hashToken(token: string): Buffer {
  return createHash("sha256").update(token).digest();
}

export class DeviceAuthenticator {
  private readonly grants = new Map<string, CachedGrant>();

  constructor(
    private readonly cloud: Pick<CloudClient, "authenticateDevice">,
    private readonly ttlMs: number,
    private readonly now: () => number = Date.now,
  ) {}

  /** Throws CloudError when the cloud cannot answer and no fresh grant is cached. */
  async verify(deviceId: string, token: string): Promise<AuthDecision> {
    const tokenHash = hashToken(token);
    const cached = this.grants.get(deviceId);
    if (cached && cached.expiresAt > this.now() && timingSafeEqual(cached.tokenHash, tokenHash)) {
      return { ok: true, tenantId: cached.tenantId, cached: true };
    }
    const answer = await this.cloud.authenticateDevice(deviceId, token);
    if (!answer.ok) {
      this.grants.delete(deviceId);
      return answer;
    }
    if (this.ttlMs > 0) {
      this.grants.set(deviceId, { tokenHash, tenantId: answer.tenantId, expiresAt: this.now() + this.ttlMs });
    }
    return { ok: true, tenantId: answer.tenantId, cached: false };
  }
}
