// What an operator does before devices can update, through the real cloud's HTTP API: sign in,
// make the organization's signing key, upload and sign a firmware image, start a campaign. Shared
// by the gateway's artifact tests, the end-to-end OTA tests and the OTA benchmark.

import { createHash } from "node:crypto";
import { nodeSha256 } from "@kestrel/cloud";
import { buildEsp32Image, type Esp32ImageSpec } from "@kestrel/wire/esp32-image";

export function sha256Of(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}

/** A well-formed ESP32 application image (see @kestrel/wire/esp32-image). */
export function firmwareImage(spec: Partial<Esp32ImageSpec> & { version: string }): Buffer {
  return Buffer.from(buildEsp32Image({ chip: "esp32", projectName: "kestrel", ...spec }, nodeSha256));
}

export interface UploadedArtifact {
  artifactId: string;
  sha256: string;
  size: number;
  version: string;
}

export class OtaOperator {
  private constructor(
    readonly baseUrl: string,
    private readonly token: string,
  ) {}

  static async signIn(baseUrl: string, admin: { email: string; password: string }): Promise<OtaOperator> {
    const response = await fetch(`${baseUrl}/api/auth/login`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(admin),
    });
    if (!response.ok) throw new Error(`login answered ${response.status}`);
    return new OtaOperator(baseUrl, ((await response.json()) as { token: string }).token);
  }

  async request<T = Record<string, unknown>>(method: string, path: string, json?: unknown): Promise<T> {
    const response = await fetch(`${this.baseUrl}${path}`, {
      method,
      headers: {
        authorization: `Bearer ${this.token}`,
        ...(json === undefined ? {} : { "content-type": "application/json" }),
      },
      body: json === undefined ? undefined : JSON.stringify(json),
    });
    const text = await response.text();
    if (!response.ok) throw new Error(`${method} ${path} answered ${response.status}: ${text}`);
    return (text === "" ? {} : JSON.parse(text)) as T;
  }

  /** A new signing key (the first, or a rotation); the key's public half and the rotation record. */
  createSigningKey(): Promise<{
    key: { keyId: string; publicKey: string };
    record: { text: string; sig: string } | null;
  }> {
    return this.request("POST", "/api/signing/keys");
  }

  async upload(image: Buffer, query: Record<string, string> = {}): Promise<UploadedArtifact> {
    const search = new URLSearchParams({ kind: "firmware", name: "kestrel-fw", chip: "esp32", ...query });
    const response = await fetch(`${this.baseUrl}/api/artifacts?${search}`, {
      method: "POST",
      headers: { authorization: `Bearer ${this.token}`, "content-type": "application/octet-stream" },
      body: new Uint8Array(image),
    });
    const text = await response.text();
    if (response.status !== 201) throw new Error(`upload answered ${response.status}: ${text}`);
    return JSON.parse(text) as UploadedArtifact;
  }

  async sign(artifactId: string): Promise<void> {
    await this.request("POST", `/api/artifacts/${artifactId}/signatures`);
  }

  async uploadSigned(image: Buffer): Promise<UploadedArtifact> {
    const artifact = await this.upload(image);
    await this.sign(artifact.artifactId);
    return artifact;
  }

  startCampaign(body: Record<string, unknown>): Promise<{ campaignId: string }> {
    return this.request("POST", "/api/campaigns", { name: "test rollout", ...body });
  }

  campaign(campaignId: string): Promise<CampaignState> {
    return this.request("GET", `/api/campaigns/${campaignId}`);
  }

  devices(campaignId: string): Promise<{ items: CampaignDeviceState[] }> {
    return this.request("GET", `/api/campaigns/${campaignId}/devices`);
  }
}

export interface CampaignState {
  status: string;
  haltReason: string | null;
  stage: number;
  counts: Record<string, number>;
  stages: Array<{ devices: number; state: string; counts: Record<string, number> }>;
}

export interface CampaignDeviceState {
  deviceId: string;
  stage: number;
  status: string;
  code: string | null;
  reason: string | null;
  running: string | null;
  bytes: number | null;
}
