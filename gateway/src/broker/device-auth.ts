// Checks a device's MQTT credentials against the cloud and remembers the
// cloud's yes for a while, so reconnect storms do not hammer the cloud, and so
// a cloud that cannot answer (down, its database stalled, too slow) does not
// lock out the fleet: a device the cloud accepted with this very token within
// the last `staleMaxMs` is let in on that verdict; any other device is refused
// with a code it retries on (CONNACK "server unavailable"). A no from the cloud
// is never cached and always wins. Only a hash of the token is kept in memory.

import { createHash, timingSafeEqual } from "node:crypto";
import { type CloudClient, CloudError } from "../uplink/cloud-client.ts";

interface Verdict {
  tokenHash: Buffer;
  tenantId: string;
  /** When the cloud last said yes, epoch ms. */
  verifiedAt: number;
}

export type AuthDecision =
  | { ok: true; tenantId: string; source: "cloud" | "cache" | "stale" }
  | { ok: false; reason: "denied" };

export interface DeviceAuthOptions {
  /** A yes is reused without asking for this long. */
  ttlMs: number;
  /** While the cloud cannot answer, a yes this old at most still lets the device in (0: never). */
  staleMaxMs: number;
  /** How long the cloud is given to answer before the cloud counts as unable to. */
  askTimeoutMs: number;
  /** Devices remembered at most; the longest unverified are forgotten first. */
  maxDevices?: number;
  now?: () => number;
}

const DEFAULT_MAX_DEVICES = 100_000;

function hashToken(token: string): Buffer {
  return createHash("sha256").update(token).digest();
}

export class DeviceAuthenticator {
  private readonly verdicts = new Map<string, Verdict>();
  /** One question to the cloud per device and token at a time: a reconnect storm asks once. */
  private readonly asking = new Map<string, Promise<AuthDecision>>();
  private readonly now: () => number;

  constructor(
    private readonly cloud: Pick<CloudClient, "authenticateDevice">,
    private readonly options: DeviceAuthOptions,
  ) {
    this.now = options.now ?? Date.now;
  }

  /** Throws CloudError when the cloud cannot answer and no usable verdict is remembered. */
  verify(deviceId: string, token: string): Promise<AuthDecision> {
    const tokenHash = hashToken(token);
    const known = this.matching(deviceId, tokenHash);
    if (known && known.verifiedAt + this.options.ttlMs > this.now()) {
      return Promise.resolve({ ok: true, tenantId: known.tenantId, source: "cache" });
    }
    const key = `${deviceId}:${tokenHash.toString("hex")}`;
    let pending = this.asking.get(key);
    if (!pending) {
      pending = this.ask(deviceId, token, tokenHash).finally(() => this.asking.delete(key));
      this.asking.set(key, pending);
    }
    return pending;
  }

  private async ask(deviceId: string, token: string, tokenHash: Buffer): Promise<AuthDecision> {
    let answer: Awaited<ReturnType<CloudClient["authenticateDevice"]>>;
    try {
      answer = await this.cloud.authenticateDevice(deviceId, token, this.options.askTimeoutMs);
    } catch (error) {
      const known = this.matching(deviceId, tokenHash);
      if (error instanceof CloudError && error.retryable && known && this.stillUsable(known)) {
        return { ok: true, tenantId: known.tenantId, source: "stale" };
      }
      throw error;
    }
    if (!answer.ok) {
      this.verdicts.delete(deviceId);
      return answer;
    }
    if (this.options.ttlMs > 0 || this.options.staleMaxMs > 0) this.remember(deviceId, tokenHash, answer.tenantId);
    return { ok: true, tenantId: answer.tenantId, source: "cloud" };
  }

  private matching(deviceId: string, tokenHash: Buffer): Verdict | undefined {
    const verdict = this.verdicts.get(deviceId);
    return verdict && timingSafeEqual(verdict.tokenHash, tokenHash) ? verdict : undefined;
  }

  private stillUsable(verdict: Verdict): boolean {
    return verdict.verifiedAt + Math.max(this.options.ttlMs, this.options.staleMaxMs) > this.now();
  }

  private remember(deviceId: string, tokenHash: Buffer, tenantId: string): void {
    // Re-inserted, so the map's order is the order of verification: the oldest go first.
    this.verdicts.delete(deviceId);
    this.verdicts.set(deviceId, { tokenHash, tenantId, verifiedAt: this.now() });
    const excess = this.verdicts.size - (this.options.maxDevices ?? DEFAULT_MAX_DEVICES);
    if (excess <= 0) return;
    let dropped = 0;
    for (const oldest of this.verdicts.keys()) {
      if (dropped++ >= excess) break;
      this.verdicts.delete(oldest);
    }
  }
}
