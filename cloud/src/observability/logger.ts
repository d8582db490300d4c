// The one way the cloud makes its pino logger (main.ts, the local platform): JSON lines with
// `service`, secrets redacted by field name and scrubbed from URLs and error messages
// (redaction.ts), ready for Loki or Elasticsearch (labels: docs/observability.md).

import { type DestinationStream, type Logger, pino, stdSerializers } from "pino";
import { logRedactPaths, REDACTED, scrubText } from "./redaction.ts";

export interface LoggerOptions {
  service: string;
  level: string;
  /** Where lines go; stdout unless given (tests capture them). */
  destination?: DestinationStream;
}

interface SerializedRequest {
  url?: string;
  [key: string]: unknown;
}

export function createLogger({ service, level, destination }: LoggerOptions): Logger {
  return pino(
    {
      level,
      base: { service },
      redact: { paths: logRedactPaths(), censor: REDACTED },
      serializers: {
        // Fastify's request serializer keeps the URL with its query string, which may carry a token.
        req: (request: SerializedRequest) => ({ ...request, ...(request.url && { url: scrubText(request.url) }) }),
        err: (error: Error) => {
          const serialized = stdSerializers.err(error);
          return {
            ...serialized,
            message: scrubText(serialized.message ?? ""),
            ...(serialized.stack && { stack: scrubText(serialized.stack) }),
          };
        },
      },
    },
    destination,
  );
}
