// One error shape for the whole API: RFC 9457 problem details
// (`application/problem+json`), from one error handler and one not-found
// handler, also for schema validation errors.

import { STATUS_CODES } from "node:http";
import type { FastifyError, FastifyInstance, FastifyReply } from "fastify";
import fp from "fastify-plugin";
import { isDatabaseUnavailable } from "../storage/availability.ts";
import { type ProblemDetails, problemSchema } from "./problem-schema.ts";

/** An error the client can act on; its code is stable, its detail is for humans. */
export class Problem extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    detail: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(detail);
  }
}

const PROBLEM_REF = { $ref: "problem#" } as const;

// What each error status means in this API, for the OpenAPI document.
const MEANINGS: Record<number, string> = {
  400: "The request does not match its schema, or its values are inconsistent.",
  401: "Credentials are missing, unknown, expired or revoked.",
  403: "The caller's role or API key scopes do not allow this.",
  404: "Not found in the caller's organization (also when it exists in another one).",
  409: "Conflicts with the current state.",
  410: "Existed, but is gone for good (e.g. an export file past its expiry).",
  413: "The body is too large.",
  415: "The body's media type is not accepted.",
  429: "Too many attempts; see Retry-After.",
  503: "A service the API depends on (the database) does not answer.",
};

interface ProblemResponse {
  description: string;
  content: { "application/problem+json": { schema: typeof PROBLEM_REF } };
}

/** Response schema entries for the given error statuses, for a route's `response`. */
export function problemResponses(...statuses: number[]): Record<number, ProblemResponse> {
  return Object.fromEntries(
    statuses.map((status) => [
      status,
      {
        description: MEANINGS[status] ?? STATUS_CODES[status] ?? "Error",
        content: { "application/problem+json": { schema: PROBLEM_REF } },
      },
    ]),
  );
}

// Fastify's own client errors, by their FST_ code, mapped to our stable codes.
const FASTIFY_CODES: Record<string, string> = {
  FST_ERR_CTP_BODY_TOO_LARGE: "payload_too_large",
  FST_ERR_CTP_INVALID_MEDIA_TYPE: "unsupported_media_type",
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: "invalid_request",
  FST_ERR_CTP_EMPTY_JSON_BODY: "invalid_request",
  FST_ERR_CTP_INVALID_JSON_BODY: "invalid_json",
};

/** A database that did not answer in time (storage/availability.ts): worth retrying shortly. */
const DATABASE_UNAVAILABLE = {
  status: 503,
  code: "database_unavailable",
  detail: "the database did not answer in time; retry shortly",
};

export function sendProblem(reply: FastifyReply, status: number, code: string, detail: string): FastifyReply {
  const problem: ProblemDetails = {
    type: "about:blank",
    title: STATUS_CODES[status] ?? "Error",
    status,
    detail,
    code,
  };
  return reply.code(status).type("application/problem+json").send(problem);
}

function toProblem(error: FastifyError | Problem): { status: number; code: string; detail: string } {
  if (error instanceof Problem) return { status: error.status, code: error.code, detail: error.message };
  if (isDatabaseUnavailable(error)) return DATABASE_UNAVAILABLE;
  if (error.validation) return { status: 400, code: "invalid_request", detail: error.message };
  const status = error.statusCode ?? 500;
  if (status >= 500 || status < 400) return { status: 500, code: "internal_error", detail: "internal server error" };
  return { status, code: FASTIFY_CODES[error.code] ?? `http_${status}`, detail: error.message };
}

async function problemDetails(app: FastifyInstance): Promise<void> {
  app.addSchema(problemSchema);

  app.setErrorHandler<FastifyError | Problem>((error, request, reply) => {
    const { status, code, detail } = toProblem(error);
    if (status >= 500) request.log.error({ err: error }, "request failed");
    else request.log.info({ code, status }, detail);
    if (error instanceof Problem) reply.headers(error.headers);
    if (code === DATABASE_UNAVAILABLE.code) reply.header("retry-after", "2");
    return sendProblem(reply, status, code, detail);
  });

  app.setNotFoundHandler((request, reply) =>
    sendProblem(reply, 404, "not_found", `no route for ${request.method} ${request.url.split("?")[0]}`),
  );
}

export const problemDetailsPlugin = fp(problemDetails, { name: "problem-details" });
