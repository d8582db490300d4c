// Partner webhooks of the caller's organization: endpoints (URL, event types, a signing secret
// shown once and stored sealed), each endpoint's delivery log with every attempt, manual
// redelivery; and this replica's dispatcher, which delivers the domain events (dispatcher.ts).

import type { FastifyInstance } from "fastify";
import type { Db } from "mongodb";
import { orgOf } from "../auth/access.ts";
import type { SecretBox } from "../auth/secret-box.ts";
import { newSecret } from "../auth/secrets.ts";
import { webhookEventSchema } from "../events/event-types.ts";
import { Problem, problemResponses } from "../http/problem.ts";
import type { CloudMetrics } from "../metrics/cloud-metrics.ts";
import { type DeliveryDoc, type DeliveryStatus, DeliveryStore } from "./delivery-store.ts";
import { type DispatcherOptions, WebhookDispatcher } from "./dispatcher.ts";
import { WebhookEgress } from "./egress.ts";
import {
  autoDisabled,
  type EndpointDoc,
  type EndpointHealthDoc,
  EndpointStore,
  emptyHealth,
  MAX_ENDPOINTS,
} from "./endpoint-store.ts";
import {
  type CreateEndpointBody,
  createEndpointBodySchema,
  type DeliveryListQuery,
  type DeliverySummary,
  type DeliveryView,
  deliveryListQuerySchema,
  deliveryListSchema,
  deliveryParamsSchema,
  deliveryViewSchema,
  type EndpointView,
  type EndpointWithSecret,
  endpointListSchema,
  endpointParamsSchema,
  endpointViewSchema,
  endpointWithSecretSchema,
  eventTypeList,
  eventTypeListSchema,
  type UpdateEndpointBody,
  updateEndpointBodySchema,
} from "./webhook-schema.ts";

export interface WebhooksOptions {
  db: Db;
  secrets: SecretBox;
  /** Internal networks webhooks may reach anyway (CIDR). */
  webhookAllowedNetworks: readonly string[];
  metrics: CloudMetrics;
  /** Run this replica's dispatcher (every replica may; one at a time delivers). */
  dispatcher: boolean;
  /** Retry and disable tuning (tests shorten them). */
  tuning?: Partial<Pick<DispatcherOptions, "retryBaseMs" | "retryMaxMs" | "pollMs">>;
}

const DEFAULT_PAGE = 50;

interface EndpointParams {
  endpointId: string;
}

interface DeliveryParams extends EndpointParams {
  deliveryId: string;
}

function endpointNotFound(endpointId: string): Problem {
  return new Problem(404, "endpoint_not_found", `no webhook endpoint ${endpointId} in this organization`);
}

function toEndpointView(doc: EndpointDoc, health: EndpointHealthDoc | null): EndpointView {
  const h = health ?? emptyHealth(doc);
  return {
    endpointId: doc._id,
    url: doc.url,
    events: doc.events,
    description: doc.description,
    enabled: doc.enabled,
    disabled: autoDisabled(doc, h) ? { at: h.disabledAt ?? 0, reason: h.disabledReason ?? "" } : null,
    health: {
      lastSuccessAt: h.lastSuccessAt,
      lastFailureAt: h.lastFailureAt,
      failingSince: h.failingSince,
      consecutiveFailures: h.consecutiveFailures,
    },
    createdAt: doc.createdAt,
    updatedAt: doc.updatedAt,
  };
}

function toSummary(doc: DeliveryDoc): DeliverySummary {
  return {
    deliveryId: doc._id,
    eventId: doc.eventId,
    eventType: doc.eventType,
    status: doc.status,
    createdAt: doc.createdAt,
    attempts: doc.attempts.at(-1)?.n ?? 0,
    lastAttempt: doc.attempts.at(-1) ?? null,
    nextAttemptAt: doc.nextAttemptAt,
    succeededAt: doc.succeededAt,
    deadAt: doc.deadAt,
    deadReason: doc.deadReason,
  };
}

function encodeCursor(doc: DeliveryDoc): string {
  return Buffer.from(JSON.stringify([doc.createdAt, doc._id])).toString("base64url");
}

function decodeCursor(cursor: string): { createdAt: number; id: string } {
  try {
    const [createdAt, id] = JSON.parse(Buffer.from(cursor, "base64url").toString("utf8")) as unknown[];
    if (Number.isSafeInteger(createdAt) && typeof id === "string") return { createdAt: createdAt as number, id };
  } catch {
    // Answered below.
  }
  throw new Problem(400, "invalid_cursor", "cursor is not one this API gave");
}

export async function webhooksPlugin(app: FastifyInstance, options: WebhooksOptions): Promise<void> {
  const endpoints = new EndpointStore(options.db);
  const deliveries = new DeliveryStore(options.db);
  const egress = new WebhookEgress(options.webhookAllowedNetworks);
  app.addSchema(webhookEventSchema);

  if (options.dispatcher) {
    const dispatcher = new WebhookDispatcher(options.db, app.log.child({ component: "webhook-dispatcher" }), {
      secrets: options.secrets,
      egress,
      metrics: options.metrics,
      ...options.tuning,
    });
    app.addHook("onReady", async () => dispatcher.start());
    app.addHook("onClose", () => dispatcher.stop());
  }

  async function endpointOf(tenantId: string, endpointId: string): Promise<EndpointDoc> {
    const doc = await endpoints.find(tenantId, endpointId);
    if (!doc) throw endpointNotFound(endpointId);
    return doc;
  }

  function checkUrl(url: string | undefined): void {
    const problem = url === undefined ? undefined : egress.urlProblem(url);
    if (problem !== undefined) throw new Problem(400, "invalid_endpoint", problem);
  }

  app.get(
    "/api/webhooks/event-types",
    {
      config: { permission: "webhooks:read" },
      schema: {
        summary: "The event types an endpoint may subscribe to (payloads: the webhookEvent schema)",
        response: { 200: { ...eventTypeListSchema, description: "Every event type." }, ...problemResponses(401, 403) },
      },
    },
    async () => eventTypeList(),
  );

  app.post<{ Body: CreateEndpointBody }>(
    "/api/webhooks/endpoints",
    {
      config: { permission: "webhooks:write" },
      schema: {
        summary: "Add a webhook endpoint; the answer holds its signing secret, shown only here",
        body: createEndpointBodySchema,
        response: {
          201: { ...endpointWithSecretSchema, description: "The endpoint and its signing secret." },
          ...problemResponses(400, 401, 403, 409),
        },
      },
    },
    async (request, reply): Promise<EndpointWithSecret> => {
      const tenantId = orgOf(request);
      const body = request.body;
      checkUrl(body.url);
      if ((await endpoints.count(tenantId)) >= MAX_ENDPOINTS) {
        throw new Problem(409, "too_many_endpoints", `an organization has at most ${MAX_ENDPOINTS} webhook endpoints`);
      }
      const secret = newSecret();
      const doc = await endpoints.create({
        tenantId,
        url: body.url,
        events: body.events,
        description: body.description ?? "",
        enabled: body.enabled ?? true,
        secret: options.secrets.seal(secret),
        createdAt: Date.now(),
      });
      reply.code(201);
      return { ...toEndpointView(doc, null), secret };
    },
  );

  app.get(
    "/api/webhooks/endpoints",
    {
      config: { permission: "webhooks:read" },
      schema: {
        summary: "List the organization's webhook endpoints with their delivery health",
        response: { 200: { ...endpointListSchema, description: "The endpoints." }, ...problemResponses(401, 403) },
      },
    },
    async (request) => {
      const docs = await endpoints.list(orgOf(request));
      const health = await Promise.all(docs.map((doc) => endpoints.healthOf(doc._id)));
      return { items: docs.map((doc, i) => toEndpointView(doc, health[i] ?? null)) };
    },
  );

  app.get<{ Params: EndpointParams }>(
    "/api/webhooks/endpoints/:endpointId",
    {
      config: { permission: "webhooks:read" },
      schema: {
        summary: "One webhook endpoint with its delivery health",
        params: endpointParamsSchema,
        response: { 200: { ...endpointViewSchema, description: "The endpoint." }, ...problemResponses(401, 403, 404) },
      },
    },
    async (request): Promise<EndpointView> => {
      const doc = await endpointOf(orgOf(request), request.params.endpointId);
      return toEndpointView(doc, await endpoints.healthOf(doc._id));
    },
  );

  app.patch<{ Params: EndpointParams; Body: UpdateEndpointBody }>(
    "/api/webhooks/endpoints/:endpointId",
    {
      config: { permission: "webhooks:write" },
      schema: {
        summary: "Change an endpoint's URL, events, description, or enable it (ending an automatic disable)",
        params: endpointParamsSchema,
        body: updateEndpointBodySchema,
        response: {
          200: { ...endpointViewSchema, description: "The endpoint as changed." },
          ...problemResponses(400, 401, 403, 404),
        },
      },
    },
    async (request): Promise<EndpointView> => {
      checkUrl(request.body.url);
      const tenantId = orgOf(request);
      const doc = await endpoints.update(tenantId, request.params.endpointId, request.body, Date.now());
      if (!doc) throw endpointNotFound(request.params.endpointId);
      return toEndpointView(doc, await endpoints.healthOf(doc._id));
    },
  );

  app.delete<{ Params: EndpointParams }>(
    "/api/webhooks/endpoints/:endpointId",
    {
      config: { permission: "webhooks:write" },
      schema: {
        summary: "Delete an endpoint (its queued deliveries are dead-lettered)",
        params: endpointParamsSchema,
        response: { 204: { description: "Deleted.", type: "null" }, ...problemResponses(401, 403, 404) },
      },
    },
    async (request, reply) => {
      if (!(await endpoints.remove(orgOf(request), request.params.endpointId))) {
        throw endpointNotFound(request.params.endpointId);
      }
      return reply.code(204).send();
    },
  );

  app.post<{ Params: EndpointParams }>(
    "/api/webhooks/endpoints/:endpointId/secret",
    {
      config: { permission: "webhooks:write" },
      schema: {
        summary: "Replace an endpoint's signing secret (the new one is shown only in this answer)",
        params: endpointParamsSchema,
        response: {
          200: { ...endpointWithSecretSchema, description: "The endpoint and its new signing secret." },
          ...problemResponses(401, 403, 404),
        },
      },
    },
    async (request): Promise<EndpointWithSecret> => {
      const secret = newSecret();
      const tenantId = orgOf(request);
      const doc = await endpoints.update(
        tenantId,
        request.params.endpointId,
        { secret: options.secrets.seal(secret) },
        Date.now(),
      );
      if (!doc) throw endpointNotFound(request.params.endpointId);
      return { ...toEndpointView(doc, await endpoints.healthOf(doc._id)), secret };
    },
  );

  app.get<{ Params: EndpointParams; Querystring: DeliveryListQuery }>(
    "/api/webhooks/endpoints/:endpointId/deliveries",
    {
      config: { permission: "webhooks:read" },
      schema: {
        summary: "An endpoint's delivery log, newest first: status, attempts, the last answer",
        params: endpointParamsSchema,
        querystring: deliveryListQuerySchema,
        response: {
          200: { ...deliveryListSchema, description: "One page of deliveries; pass cursor back for the next." },
          ...problemResponses(400, 401, 403, 404),
        },
      },
    },
    async (request) => {
      const tenantId = orgOf(request);
      const { endpointId } = request.params;
      await endpointOf(tenantId, endpointId);
      const limit = Number(request.query.limit ?? DEFAULT_PAGE);
      if (limit < 1 || limit > 200) throw new Problem(400, "invalid_request", "limit must be 1..200");
      const docs = await deliveries.list(tenantId, endpointId, {
        limit,
        ...(request.query.status && { status: request.query.status as DeliveryStatus }),
        ...(request.query.cursor && { before: decodeCursor(request.query.cursor) }),
      });
      const page = docs.slice(0, limit);
      const last = page.at(-1);
      return { items: page.map(toSummary), cursor: docs.length > limit && last ? encodeCursor(last) : null };
    },
  );

  app.get<{ Params: DeliveryParams }>(
    "/api/webhooks/endpoints/:endpointId/deliveries/:deliveryId",
    {
      config: { permission: "webhooks:read" },
      schema: {
        summary: "One delivery with every attempt and the payload sent",
        params: deliveryParamsSchema,
        response: {
          200: { ...deliveryViewSchema, description: "The delivery." },
          ...problemResponses(401, 403, 404),
        },
      },
    },
    async (request): Promise<DeliveryView> => {
      const tenantId = orgOf(request);
      const { endpointId, deliveryId } = request.params;
      await endpointOf(tenantId, endpointId);
      const doc = await deliveries.find(tenantId, endpointId, deliveryId);
      if (!doc) throw new Problem(404, "delivery_not_found", `no delivery ${deliveryId} for this endpoint`);
      return { ...toSummary(doc), attempts: doc.attempts, payload: JSON.parse(doc.body) };
    },
  );

  app.post<{ Params: DeliveryParams }>(
    "/api/webhooks/endpoints/:endpointId/deliveries/:deliveryId/redeliver",
    {
      config: { permission: "webhooks:write" },
      schema: {
        summary: "Send a delivered or dead-lettered event again, after the endpoint's queued ones",
        params: deliveryParamsSchema,
        response: {
          202: { ...deliveryViewSchema, description: "Queued again." },
          ...problemResponses(401, 403, 404, 409),
        },
      },
    },
    async (request, reply): Promise<DeliveryView> => {
      const tenantId = orgOf(request);
      const { endpointId, deliveryId } = request.params;
      await endpointOf(tenantId, endpointId);
      const doc = await deliveries.find(tenantId, endpointId, deliveryId);
      if (!doc) throw new Problem(404, "delivery_not_found", `no delivery ${deliveryId} for this endpoint`);
      if (!(await deliveries.redeliver(doc, Date.now()))) {
        throw new Problem(409, "delivery_pending", `delivery ${deliveryId} is still queued`);
      }
      const queued = (await deliveries.get(deliveryId)) ?? doc;
      reply.code(202);
      return { ...toSummary(queued), attempts: queued.attempts, payload: JSON.parse(queued.body) };
    },
  );
}
