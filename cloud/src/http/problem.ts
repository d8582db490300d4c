// One error shape for the whole API: RFC 9457 problem details
// (`application/problem+json`), from one error handler and one not-found
// handler, also for schema validation errors, and from the layers below the
// routes: Fastify's router (a bad URL, a too long path parameter) and Node's
// HTTP parser (headers too large, a malformed request), which answer before any
// hook runs. A path that exists under other methods is 405 with `Allow`.

import { STATUS_CODES } from "node:http";
import type { Socket } from "node:net";
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import fp from "fastify-plugin";
import FindMyWay from "find-my-way";
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
  405: "The path exists, but not for this method; `Allow` lists its methods.",
  413: "The body is too large.",
  414: "A path parameter is longer than the router accepts.",
  415: "The body's media type is not accepted.",
  429: "Too many requests or attempts; see Retry-After.",
  431: "The request's headers are too large.",
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

// Errors raised by the router: no hook has run for them.
const ROUTER_ERRORS: Record<string, { status: number; code: string }> = {
  FST_ERR_BAD_URL: { status: 400, code: "bad_url" },
  FST_ERR_MAX_PARAM_LENGTH: { status: 414, code: "uri_too_long" },
};

/**
 * What every problem carries, also those sent before any hook ran: an error is never cached, and
 * its JSON is never sniffed as anything else.
 */
const PROBLEM_HEADERS = { "cache-control": "no-store", "x-content-type-options": "nosniff" } as const;

function problemOf(status: number, code: string, detail: string): ProblemDetails {
  return { type: "about:blank", title: STATUS_CODES[status] ?? "Error", status, detail, code };
}

export function sendProblem(reply: FastifyReply, status: number, code: string, detail: string): FastifyReply {
  return reply
    .code(status)
    .headers(PROBLEM_HEADERS)
    .type("application/problem+json")
    .send(problemOf(status, code, detail));
}

/**
 * Node's HTTP parser refused the request before Fastify saw it (headers over the limit, a
 * malformed request line, a timeout): the answer is written to the socket as a problem too.
 */
function answerClientError(error: NodeJS.ErrnoException, socket: Socket): void {
  if (error.code === "ECONNRESET" || socket.destroyed) return;
  const [status, code, detail] =
    error.code === "HPE_HEADER_OVERFLOW"
      ? [431, "headers_too_large", "the request's headers exceed the server's limit"]
      : error.code === "ERR_HTTP_REQUEST_TIMEOUT"
        ? [408, "request_timeout", "the request did not arrive in time"]
        : [400, "bad_request", "the request is not valid HTTP"];
  const body = JSON.stringify(problemOf(status, code, detail));
  if (socket.writable) {
    const headers = {
      "content-type": "application/problem+json; charset=utf-8",
      "content-length": String(Buffer.byteLength(body)),
      ...PROBLEM_HEADERS,
      connection: "close",
    };
    const head = Object.entries(headers).map(([name, value]) => `${name}: ${value}\r\n`);
    socket.write(`HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\n${head.join("")}\r\n${body}`);
  }
  socket.destroy(error);
}

/** Fastify server options that route the layers below the routes to problem details. */
export const problemServerOptions = {
  clientErrorHandler: answerClientError,
  frameworkErrors: (error: FastifyError, _request: FastifyRequest, reply: FastifyReply) => {
    const known = ROUTER_ERRORS[error.code];
    if (!known) {
      reply.log.error({ err: error }, "router error");
      return sendProblem(reply, 500, "internal_error", "internal server error");
    }
    return sendProblem(reply, known.status, known.code, error.message);
  },
};

const METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"] as const;
type Method = (typeof METHODS)[number];
const isMethod = (method: string): method is Method => (METHODS as readonly string[]).includes(method);

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

  // Every route's path, to tell "no such path" (404) from "not with this method" (405). The
  // dashboard's catch-all for static files is left out: it would make every path exist.
  const paths = FindMyWay({ ignoreTrailingSlash: false });
  const nothing = () => undefined;
  app.addHook("onRoute", (route) => {
    if (route.url === "/*") return;
    for (const method of [route.method].flat()) if (isMethod(method)) paths.on(method, route.url, nothing);
  });
  const allowedMethods = (url: string) =>
    METHODS.filter((method) => paths.find(method, url.split("?")[0] ?? url) !== null);

  app.setErrorHandler<FastifyError | Problem>((error, request, reply) => {
    // Failed on the way to the not-found handler (a method Fastify reads a body for, sent without
    // one): what matters is that no route takes it.
    if (request.is404 && !(error instanceof Problem)) return notFound(request, reply);
    const { status, code, detail } = toProblem(error);
    if (status >= 500) request.log.error({ err: error }, "request failed");
    else request.log.info({ code, status }, detail);
    if (error instanceof Problem) reply.headers(error.headers);
    if (code === DATABASE_UNAVAILABLE.code) reply.header("retry-after", "2");
    return sendProblem(reply, status, code, detail);
  });

  function notFound(request: FastifyRequest, reply: FastifyReply): FastifyReply {
    const path = request.url.split("?")[0];
    const allowed = allowedMethods(request.url);
    if (allowed.length > 0) {
      reply.header("allow", allowed.join(", "));
      return sendProblem(reply, 405, "method_not_allowed", `${request.method} is not allowed on ${path}`);
    }
    return sendProblem(reply, 404, "not_found", `no route for ${request.method} ${path}`);
  }

  app.setNotFoundHandler(notFound);
}

export const problemDetailsPlugin = fp(problemDetails, { name: "problem-details" });
