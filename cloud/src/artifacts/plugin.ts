// The artifact registry: streamed upload validated by content, listing, download with byte ranges,
// signing of the manifest; and the gateway's fetch by SHA-256, which fills its cache.

import type { Readable } from "node:stream";
import type { ArtifactKind } from "@kestrel/wire/artifacts";
import type { FastifyInstance } from "fastify";
import type { Db } from "mongodb";
import { actorOf, orgOf, principalOf } from "../auth/access.ts";
import type { SecretBox } from "../auth/secret-box.ts";
import { Problem, problemResponses } from "../http/problem.ts";
import { ArtifactRegistry } from "./artifact-registry.ts";
import {
  type ArtifactView,
  artifactIdParamsSchema,
  artifactViewSchema,
  contentResponse,
  listQuerySchema,
  manifestResponseSchema,
  sha256ParamsSchema,
  type UploadQuery,
  uploadQuerySchema,
} from "./artifact-schema.ts";
import type { ArtifactDoc, ArtifactSignature } from "./artifact-store.ts";
import { sendArtifactContent } from "./content-reply.ts";

export interface ArtifactsOptions {
  db: Db;
  secrets: SecretBox;
  /** The largest artifact accepted (ARTIFACT_MAX_BYTES). */
  maxBytes: number;
}

export function toArtifactView(doc: ArtifactDoc): ArtifactView {
  return {
    artifactId: doc.artifactId,
    kind: doc.kind,
    name: doc.name,
    version: doc.version,
    target: doc.target,
    size: doc.size,
    sha256: doc.sha256,
    notes: doc.notes,
    details: doc.details,
    createdBy: doc.createdBy,
    createdAt: doc.createdAt.getTime(),
    signatures: doc.signatures.map(({ keyId, signedAt, signedBy }) => ({
      keyId,
      signedAt: signedAt.getTime(),
      signedBy,
    })),
  };
}

function signatureView(signature: ArtifactSignature) {
  return {
    keyId: signature.keyId,
    signedAt: signature.signedAt.getTime(),
    signedBy: signature.signedBy,
    manifest: { text: signature.text, sig: signature.sig },
  };
}

const OCTET_STREAM = "application/octet-stream";

export async function artifactsPlugin(app: FastifyInstance, options: ArtifactsOptions): Promise<void> {
  const registry = new ArtifactRegistry(options.db, options.secrets, options.maxBytes);

  await app.register(async (upload) => {
    // The body stays a stream: the registry checks and stores it as it arrives, never whole in memory.
    upload.addContentTypeParser(OCTET_STREAM, (_request, payload, done) => done(null, payload));
    upload.post<{ Querystring: UploadQuery }>(
      "/api/artifacts",
      {
        config: { permission: "artifacts:write", streamedBody: OCTET_STREAM },
        schema: {
          summary: "Upload an artifact (body: its bytes, application/octet-stream); its content is validated by kind",
          querystring: uploadQuerySchema,
          response: {
            201: { ...artifactViewSchema, description: "The stored artifact (unsigned until signed)." },
            ...problemResponses(400, 401, 403, 409, 413, 415, 422),
          },
        },
      },
      async (request, reply) => {
        const tenantId = orgOf(request);
        if (!request.headers["content-type"]?.startsWith(OCTET_STREAM))
          throw new Problem(415, "unsupported_media_type", `send the artifact's bytes as ${OCTET_STREAM}`);
        const { kind, name, version, chip, board = "*", notes = "" } = request.query;
        const length = request.headers["content-length"];
        // A refusal mid-body must still answer: stop reading without destroying the request, and
        // close the connection after the answer rather than read the rest of an oversized body.
        const body = (request.body as Readable).iterator({ destroyOnReturn: false });
        let doc: ArtifactDoc;
        try {
          doc = await registry.upload(
            tenantId,
            {
              kind,
              name,
              version,
              target: { chip, board },
              notes,
              createdBy: actorOf(principalOf(request)),
              declaredBytes: length === undefined ? undefined : Number(length),
            },
            body,
          );
        } catch (error) {
          if (error instanceof Problem && error.status === 413) reply.header("connection", "close");
          throw error;
        }
        request.log.info(
          { tenantId, artifactId: doc.artifactId, kind, name, version: doc.version, size: doc.size },
          "artifact stored",
        );
        return reply.code(201).send(toArtifactView(doc));
      },
    );
  });

  app.get<{ Querystring: { kind?: ArtifactKind; name?: string; limit?: string } }>(
    "/api/artifacts",
    {
      config: { permission: "artifacts:read" },
      schema: {
        summary: "The organization's artifacts, newest first",
        querystring: listQuerySchema,
        response: {
          200: {
            description: "Artifacts matching the filter.",
            type: "object",
            additionalProperties: false,
            required: ["items"],
            properties: { items: { type: "array", items: artifactViewSchema } },
          },
          ...problemResponses(400, 401, 403),
        },
      },
    },
    async (request) => {
      const { kind, name, limit = "50" } = request.query;
      const filter = { ...(kind ? { kind } : {}), ...(name ? { name } : {}) };
      const docs = await registry.store.list(orgOf(request), filter, Number(limit));
      return { items: docs.map(toArtifactView) };
    },
  );

  app.get<{ Params: { artifactId: string } }>(
    "/api/artifacts/:artifactId",
    {
      config: { permission: "artifacts:read" },
      schema: {
        summary: "One artifact",
        params: artifactIdParamsSchema,
        response: {
          200: { ...artifactViewSchema, description: "The artifact and who signed its manifest." },
          ...problemResponses(400, 401, 403, 404),
        },
      },
    },
    async (request) => toArtifactView(await registry.require(orgOf(request), request.params.artifactId)),
  );

  app.get<{ Params: { artifactId: string } }>(
    "/api/artifacts/:artifactId/content",
    {
      config: { permission: "artifacts:read" },
      schema: {
        summary: "Download an artifact's bytes; a Range header (bytes=) resumes a cut download",
        params: artifactIdParamsSchema,
        response: { 200: contentResponse, 206: contentResponse, ...problemResponses(400, 401, 403, 404, 416) },
      },
    },
    async (request, reply) => {
      const doc = await registry.require(orgOf(request), request.params.artifactId);
      return sendArtifactContent(reply, registry, doc, request.headers.range);
    },
  );

  app.post<{ Params: { artifactId: string } }>(
    "/api/artifacts/:artifactId/signatures",
    {
      config: { permission: "artifacts:write" },
      schema: {
        summary: "Sign the artifact's manifest with the organization's active key (once per key)",
        params: artifactIdParamsSchema,
        response: {
          200: { ...manifestResponseSchema, description: "Already signed by the active key: that signature." },
          201: { ...manifestResponseSchema, description: "The new signature by the active key." },
          ...problemResponses(400, 401, 403, 404, 409),
        },
      },
    },
    async (request, reply) => {
      const tenantId = orgOf(request);
      const doc = await registry.require(tenantId, request.params.artifactId);
      const { signature, created } = await registry.sign(doc, actorOf(principalOf(request)));
      if (created)
        request.log.info({ tenantId, artifactId: doc.artifactId, keyId: signature.keyId }, "artifact signed");
      return reply.code(created ? 201 : 200).send(signatureView(signature));
    },
  );

  app.get<{ Params: { sha256: string } }>(
    "/api/gateway/v1/artifacts/:sha256",
    {
      config: { gateway: true },
      schema: {
        summary: "A gateway fetches an artifact of its organization by SHA-256 to cache it (byte ranges allowed)",
        params: sha256ParamsSchema,
        response: { 200: contentResponse, 206: contentResponse, ...problemResponses(400, 401, 404, 416) },
      },
    },
    async (request, reply) => {
      const tenantId = orgOf(request);
      const { sha256 } = request.params;
      const doc = await registry.store.findBySha256(tenantId, sha256);
      if (!doc) throw new Problem(404, "artifact_not_found", `no artifact with SHA-256 ${sha256} in this organization`);
      return sendArtifactContent(reply, registry, doc, request.headers.range);
    },
  );
}
