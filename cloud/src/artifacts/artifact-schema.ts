// The artifact registry API's shapes: JSON schemas and their TypeScript twins.

import type { ArtifactKind } from "@kestrel/wire/artifacts";
import { limitParameter, ONE_LINE_PATTERN } from "../http/text-schema.ts";
import { type ArtifactRecord, MAX_ARTIFACTS_LISTED } from "./artifact-store.ts";

export interface SignatureView {
  keyId: string;
  signedAt: number;
  signedBy: string;
}

export interface ArtifactView extends ArtifactRecord {
  createdAt: number;
  signatures: SignatureView[];
}

export interface UploadQuery {
  kind: ArtifactKind;
  name: string;
  version?: string;
  chip: string;
  board?: string;
  notes?: string;
}

const KIND = { type: "string", enum: ["firmware", "plugin", "model"] } as const;
const SHA256 = { type: "string", pattern: "^[0-9a-f]{64}$" } as const;

export const artifactIdParamsSchema = {
  type: "object",
  additionalProperties: false,
  required: ["artifactId"],
  properties: { artifactId: { type: "string", pattern: "^art_[A-Za-z0-9_-]{22}$" } },
  examples: [{ artifactId: "art_q0r9XbZk3mN1pL2sT4vW6y" }],
} as const;

export const artifactViewSchema = {
  type: "object",
  additionalProperties: false,
  required: [
    "artifactId",
    "kind",
    "name",
    "version",
    "target",
    "size",
    "sha256",
    "notes",
    "details",
    "createdBy",
    "createdAt",
    "signatures",
  ],
  properties: {
    artifactId: { type: "string" },
    kind: KIND,
    name: { type: "string" },
    version: { type: "string", description: "Semantic version; for firmware, the image's esp_app_desc_t version." },
    target: {
      type: "object",
      additionalProperties: false,
      required: ["chip", "board"],
      properties: { chip: { type: "string" }, board: { type: "string", description: '"*": any board with the chip.' } },
    },
    size: { type: "integer" },
    sha256: SHA256,
    notes: { type: "string" },
    details: { type: "object", additionalProperties: { type: "string" } },
    createdBy: { type: "string" },
    createdAt: { type: "integer" },
    signatures: {
      type: "array",
      items: {
        type: "object",
        additionalProperties: false,
        required: ["keyId", "signedAt", "signedBy"],
        properties: { keyId: { type: "string" }, signedAt: { type: "integer" }, signedBy: { type: "string" } },
      },
    },
  },
} as const;

export const uploadQuerySchema = {
  type: "object",
  additionalProperties: false,
  required: ["kind", "name", "chip"],
  properties: {
    kind: KIND,
    name: { type: "string", pattern: "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$" },
    version: { type: "string", maxLength: 32, description: "Optional for firmware: the image states it." },
    chip: { type: "string", pattern: "^[a-z0-9_-]{1,32}$" },
    board: { type: "string", pattern: "^[a-z0-9_*-]{1,32}$" },
    notes: { type: "string", maxLength: 2000, pattern: ONE_LINE_PATTERN },
  },
  examples: [{ kind: "firmware", name: "kestrel-fw", version: "1.2.0", chip: "esp32", board: "*", notes: "fixes" }],
} as const;

export const listQuerySchema = {
  type: "object",
  additionalProperties: false,
  properties: {
    kind: KIND,
    name: { type: "string", maxLength: 64 },
    limit: limitParameter(MAX_ARTIFACTS_LISTED, 50),
  },
  examples: [{ kind: "firmware", name: "kestrel-fw", limit: "50" }],
} as const;

export const manifestResponseSchema = {
  type: "object",
  additionalProperties: false,
  required: ["keyId", "signedAt", "signedBy", "manifest"],
  properties: {
    keyId: { type: "string" },
    signedAt: { type: "integer" },
    signedBy: { type: "string" },
    manifest: {
      type: "object",
      additionalProperties: false,
      required: ["text", "sig"],
      properties: {
        text: { type: "string", description: "The manifest JSON exactly as signed." },
        sig: { type: "string", description: "ECDSA P-256 / SHA-256, raw r || s, hex." },
      },
    },
  },
} as const;

export const contentResponse = {
  description: "The artifact's bytes (206 with Content-Range for a byte range).",
  content: { "application/octet-stream": { schema: { type: "string", format: "binary" } } },
} as const;

export const sha256ParamsSchema = {
  type: "object",
  additionalProperties: false,
  required: ["sha256"],
  properties: { sha256: SHA256 },
  examples: [{ sha256: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08" }],
} as const;
