// The organization's artifact signing keys: list them (public halves only), create the first one or
// rotate to a new one, revoke a retired one, and read the trust records devices follow.

import type { FastifyInstance } from "fastify";
import type { Db } from "mongodb";
import { actorOf, orgOf, principalOf } from "../auth/access.ts";
import type { SecretBox } from "../auth/secret-box.ts";
import { problemResponses } from "../http/problem.ts";
import { SigningService } from "./signing-service.ts";

export interface SigningOptions {
  db: Db;
  secrets: SecretBox;
}

const KEY_ID = { type: "string", pattern: "^[0-9a-f]{16}$" } as const;

const signedTextSchema = {
  type: "object",
  additionalProperties: false,
  required: ["text", "sig"],
  properties: {
    text: { type: "string", description: "The exact JSON text that was signed." },
    sig: { type: "string", description: "ECDSA P-256 / SHA-256 signature of text, raw r || s in hex." },
  },
} as const;

const keyViewSchema = {
  type: "object",
  additionalProperties: false,
  required: ["keyId", "publicKey", "status", "createdAt", "createdBy", "retiredAt"],
  properties: {
    keyId: KEY_ID,
    publicKey: { type: "string", description: "The uncompressed P-256 point (04 || x || y), hex." },
    status: { type: "string", enum: ["active", "retired", "revoked"] },
    createdAt: { type: "integer" },
    createdBy: { type: "string" },
    retiredAt: { type: ["integer", "null"] },
  },
} as const;

export async function signingPlugin(app: FastifyInstance, options: SigningOptions): Promise<void> {
  const signing = new SigningService(options.db, options.secrets);

  app.get(
    "/api/signing/keys",
    {
      config: { permission: "artifacts:read" },
      schema: {
        summary: "The organization's signing keys, public halves only, newest first",
        response: {
          200: {
            description: "Keys with their status; provision devices with the active one's publicKey.",
            type: "object",
            additionalProperties: false,
            required: ["items"],
            properties: { items: { type: "array", items: keyViewSchema } },
          },
          ...problemResponses(401, 403),
        },
      },
    },
    async (request) => ({ items: await signing.list(orgOf(request)) }),
  );

  app.post(
    "/api/signing/keys",
    {
      config: { permission: "signing:admin" },
      schema: {
        summary: "Create the first signing key, or rotate: a new key, announced by a record the old one signs",
        response: {
          201: {
            description:
              "The new active key and, for a rotation, the trust record devices receive with their next offer.",
            type: "object",
            additionalProperties: false,
            required: ["key", "record"],
            properties: { key: keyViewSchema, record: { anyOf: [signedTextSchema, { type: "null" }] } },
          },
          ...problemResponses(401, 403, 409),
        },
      },
    },
    async (request, reply) => {
      const tenantId = orgOf(request);
      const created = await signing.createKey(tenantId, actorOf(principalOf(request)));
      request.log.info(
        { tenantId, keyId: created.key.keyId, rotation: created.record !== null },
        "signing key created",
      );
      return reply.code(201).send(created);
    },
  );

  app.post<{ Params: { signingKeyId: string } }>(
    "/api/signing/keys/:signingKeyId/revoke",
    {
      config: { permission: "signing:admin" },
      schema: {
        summary: "Revoke a key that is no longer active: devices drop it when they apply the record",
        params: {
          type: "object",
          additionalProperties: false,
          required: ["signingKeyId"],
          properties: { signingKeyId: KEY_ID },
          examples: [{ signingKeyId: "0123456789abcdef" }],
        },
        response: {
          200: {
            description: "The revocation record, signed by the active key.",
            type: "object",
            additionalProperties: false,
            required: ["record"],
            properties: { record: signedTextSchema },
          },
          ...problemResponses(400, 401, 403, 404, 409),
        },
      },
    },
    async (request) => {
      const tenantId = orgOf(request);
      const { signingKeyId } = request.params;
      const record = await signing.revoke(tenantId, signingKeyId, actorOf(principalOf(request)));
      request.log.warn({ tenantId, keyId: signingKeyId }, "signing key revoked");
      return { record };
    },
  );

  app.get(
    "/api/signing/trust",
    {
      config: { permission: "artifacts:read" },
      schema: {
        summary: "The trust records devices apply, oldest first",
        response: {
          200: {
            description: "Signed records: each adds and/or retires keys and is signed by a key trusted before it.",
            type: "object",
            additionalProperties: false,
            required: ["records"],
            properties: { records: { type: "array", items: signedTextSchema } },
          },
          ...problemResponses(401, 403),
        },
      },
    },
    async (request) => ({ records: await signing.trust(orgOf(request)) }),
  );
}
