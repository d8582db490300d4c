// The one way the cloud makes its pino logger (main.ts, the local platform): JSON lines with
// `service`, secrets redacted by field name and scrubbed from URLs and error messages
// (redaction.ts), ready for Loki or Elasticsearch (labels: docs/observability.md).

import { type DestinationStream, type Logger, pino, stdSerializers } from "pino";
import { logRedactPaths, REDACTED, scrubText } from "./redaction.ts";

export interface LoggerOptions {
  /** The `service` of every line; leave it out when children name theirs (the local platform). */
  service?: string;
  level: string;
  /** Where lines go; stdout unless given (tests capture them). */
  destination?: DestinationStream;
}

/** What Fastify hands the `req` serializer: its request (only these fields are read). */
interface LoggedRequest {
  method?: string;
  url?: string;
  host?: string;
  ip?: string;
  socket?: { remotePort?: number };
}

export function createLogger({ service, level, destination }: LoggerOptions): Logger {
  return pino(
    {
      level,
      base: service ? { service } : {},
      redact: { paths: logRedactPaths(), censor: REDACTED },
      serializers: {
        // Fastify's own fields, with the query string scrubbed (it may carry a token); never headers or body.
        req: (request: LoggedRequest) => ({
          method: request.method,
          url: scrubText(request.url ?? ""),
          host: request.host,
          remoteAddress: request.ip,
          remotePort: request.socket?.remotePort,
        }),
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
