// Sends an artifact's bytes, whole or one HTTP byte range (RFC 9110 §14): a gateway or a CLI whose
// download was cut resumes where it stopped instead of starting over.

import type { FastifyReply } from "fastify";
import { Problem } from "../http/problem.ts";
import type { ArtifactRegistry } from "./artifact-registry.ts";
import type { ArtifactDoc } from "./artifact-store.ts";

/** [start, end) of a single `bytes=` range; undefined for the whole; 416 when it cannot be served. */
export function byteRange(header: string | undefined, size: number): { start: number; end: number } | undefined {
  if (header === undefined) return undefined;
  const match = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  const unsatisfiable = () =>
    new Problem(416, "range_not_satisfiable", `the artifact has ${size} bytes; ask for one range within them`, {
      "content-range": `bytes */${size}`,
    });
  if (!match || (match[1] === "" && match[2] === "")) throw unsatisfiable();
  const [, first = "", last = ""] = match;
  let start: number;
  let end: number;
  if (first === "") {
    // A suffix: the last n bytes.
    start = Math.max(0, size - Number(last));
    end = size;
  } else {
    start = Number(first);
    end = last === "" ? size : Math.min(size, Number(last) + 1);
  }
  if (start >= size || end <= start) throw unsatisfiable();
  return { start, end };
}

export function sendArtifactContent(
  reply: FastifyReply,
  registry: ArtifactRegistry,
  doc: ArtifactDoc,
  rangeHeader: string | undefined,
): FastifyReply {
  const range = byteRange(rangeHeader, doc.size);
  reply
    .header("content-type", "application/octet-stream")
    .header("accept-ranges", "bytes")
    .header("etag", `"${doc.sha256}"`)
    .header("x-artifact-sha256", doc.sha256);
  if (!range) return reply.header("content-length", doc.size).send(registry.read(doc));
  return reply
    .code(206)
    .header("content-range", `bytes ${range.start}-${range.end - 1}/${doc.size}`)
    .header("content-length", range.end - range.start)
    .send(registry.read(doc, range));
}
