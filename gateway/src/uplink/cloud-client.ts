// HTTP client for the cloud's gateway API: device authentication and batched,
// idempotent ingest. Every call has a timeout; failures carry a stable code.

import type { IngestRejection, IngestRequest, IngestResult } from "@kestrel/wire";

export type DeviceAuthResult = { ok: true; tenantId: string } | { ok: false; reason: "denied" };

/** A failure to reach the cloud or an answer it should not give; `retryable` says whether to try again. */
export class CloudError extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly retryable: boolean,
    readonly status?: number,
  ) {
    super(message);
  }
}

export interface CloudClientOptions {
  baseUrl: string;
  gatewayKey: string;
  timeoutMs: number;
}

export class CloudClient {
  constructor(private readonly options: CloudClientOptions) {}

  /** `timeoutMs`: this question's own deadline (a device waits for its CONNACK meanwhile). */
  async authenticateDevice(deviceId: string, token: string, timeoutMs?: number): Promise<DeviceAuthResult> {
    const response = await this.post("/api/gateway/v1/device-auth", { deviceId, token }, timeoutMs);
    if (response.status === 401 || response.status === 404) {
      const problem = await readJson(response);
      // A 401 for our own gateway key is a configuration fault, not a bad device.
      if (isObject(problem) && problem.code === "gateway_auth_failed") {
        throw new CloudError("gateway_auth_failed", "the cloud refused this gateway's key", false, 401);
      }
      return { ok: false, reason: "denied" };
    }
    const body = await this.expectOk(response);
    if (!isObject(body) || typeof body.tenantId !== "string") {
      throw new CloudError("bad_response", "device-auth answer has no tenantId", true, response.status);
    }
    return { ok: true, tenantId: body.tenantId };
  }

  async ingest(request: IngestRequest): Promise<IngestResult> {
    const response = await this.post("/api/gateway/v1/ingest", request);
    const body = await this.expectOk(response);
    if (!isObject(body) || typeof body.accepted !== "number") {
      throw new CloudError("bad_response", "ingest answer lacks accepted", true, response.status);
    }
    return {
      accepted: body.accepted,
      rejected: Array.isArray(body.rejected) ? (body.rejected as IngestRejection[]) : [],
    };
  }

  private async post(path: string, body: unknown, timeoutMs = this.options.timeoutMs): Promise<Response> {
    try {
      return await fetch(`${this.options.baseUrl}${path}`, {
        method: "POST",
        headers: { "content-type": "application/json", authorization: `Bearer ${this.options.gatewayKey}` },
        body: JSON.stringify(body),
        signal: AbortSignal.timeout(timeoutMs),
      });
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      throw new CloudError("cloud_unreachable", `cannot reach the cloud at ${this.options.baseUrl}: ${message}`, true);
    }
  }

  private async expectOk(response: Response): Promise<unknown> {
    const body = await readJson(response);
    if (response.ok) return body;
    const detail = isObject(body) && typeof body.detail === "string" ? body.detail : response.statusText;
    const code = isObject(body) && typeof body.code === "string" ? body.code : `http_${response.status}`;
    // 4xx other than 408/429 will not improve by retrying the same request.
    const retryable = response.status >= 500 || response.status === 408 || response.status === 429;
    throw new CloudError(code, `cloud answered ${response.status}: ${detail}`, retryable, response.status);
  }
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

async function readJson(response: Response): Promise<unknown> {
  const text = await response.text();
  if (text === "") return undefined;
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}
