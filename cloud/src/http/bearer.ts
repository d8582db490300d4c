// Reads the `Authorization: Bearer <token>` header shared by operator sessions
// and gateway keys.

import type { FastifyRequest } from "fastify";

// RFC 6750 b64token syntax; the scheme name is case-insensitive (RFC 9110, 11.1).
const BEARER = /^Bearer +([A-Za-z0-9._~+/-]+=*) *$/i;

export function bearerToken(request: FastifyRequest): string | undefined {
  const header = request.headers.authorization;
  return header ? BEARER.exec(header)?.[1] : undefined;
}
