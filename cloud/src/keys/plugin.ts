// API keys of the caller's organization: create (the secret is shown once), list, revoke; and the
// resolver that lets `Authorization: Bearer kst_…` stand for its organization and scopes on every
// permission route (and, with the `ingest` scope, on the gateway routes).

import type { FastifyInstance } from "fastify";
import type { Db } from "mongodb";
import { actorOf, orgOf, principalOf } from "../auth/access.ts";
import { Problem, problemResponses } from "../http/problem.ts";
import {
  type CreatedKey,
  type CreateKeyBody,
  createdKeySchema,
  createKeyBodySchema,
  type KeyView,
  keyIdParamsSchema,
  keyListSchema,
} from "./key-schema.ts";
import { type KeyDoc, KeyStore, MAX_ACTIVE_KEYS } from "./key-store.ts";

export interface KeysOptions {
  db: Db;
}

function toKeyView(doc: KeyDoc): KeyView {
  return {
    keyId: doc.keyId,
    name: doc.name,
    scopes: doc.scopes,
    createdAt: doc.createdAt.getTime(),
    createdBy: doc.createdBy,
    expiresAt: doc.expiresAt?.getTime() ?? null,
    lastUsedAt: doc.lastUsedAt?.getTime() ?? null,
    revokedAt: doc.revokedAt?.getTime() ?? null,
  };
}

export async function keysPlugin(app: FastifyInstance, options: KeysOptions): Promise<void> {
  const keys = new KeyStore(options.db);

  app.addOperatorResolver(async (token) => {
    const key = await keys.resolve(token);
    return key && { kind: "apiKey", ...key };
  });

  app.post<{ Body: CreateKeyBody }>(
    "/api/keys",
    {
      config: { permission: "keys:admin" },
      schema: {
        summary: "Create an API key; its secret is in this answer only",
        body: createKeyBodySchema,
        response: { 201: createdKeySchema, ...problemResponses(400, 401, 403, 409) },
      },
    },
    async (request, reply): Promise<CreatedKey> => {
      const tenantId = orgOf(request);
      const { name, scopes, expiresAt } = request.body;
      if (expiresAt !== undefined && expiresAt <= Date.now()) {
        throw new Problem(400, "invalid_request", "expiresAt must be in the future");
      }
      if ((await keys.countActive(tenantId)) >= MAX_ACTIVE_KEYS) {
        throw new Problem(409, "too_many_keys", `an organization has at most ${MAX_ACTIVE_KEYS} active keys`);
      }
      const createdBy = actorOf(principalOf(request));
      const { doc, secret } = await keys.create(tenantId, {
        name,
        scopes,
        expiresAt: expiresAt === undefined ? null : new Date(expiresAt),
        createdBy,
      });
      request.log.info({ tenantId, keyId: doc.keyId, scopes }, "API key created");
      reply.code(201);
      return { ...toKeyView(doc), key: secret };
    },
  );

  app.get(
    "/api/keys",
    {
      config: { permission: "keys:admin" },
      schema: {
        summary: "The organization's API keys (never their secrets), revoked ones included",
        response: { 200: keyListSchema, ...problemResponses(401, 403) },
      },
    },
    async (request) => ({ items: (await keys.list(orgOf(request))).map(toKeyView) }),
  );

  app.delete<{ Params: { keyId: string } }>(
    "/api/keys/:keyId",
    {
      config: { permission: "keys:admin" },
      schema: {
        summary: "Revoke an API key; it is refused from the next request on",
        params: keyIdParamsSchema,
        response: {
          204: { description: "The key is revoked (also when it already was).", type: "null" },
          ...problemResponses(400, 401, 403, 404),
        },
      },
    },
    async (request, reply) => {
      const tenantId = orgOf(request);
      const { keyId } = request.params;
      if (!(await keys.find(tenantId, keyId))) {
        throw new Problem(404, "key_not_found", `no API key ${keyId} in this organization`);
      }
      await keys.revoke(tenantId, keyId);
      request.log.info({ tenantId, keyId }, "API key revoked");
      return reply.code(204).send();
    },
  );
}
