// Input hygiene for every route, before schema validation: JSON bodies and query strings may not
// carry object keys that MongoDB would read as an operator or a path (`$…`, `a.b`), and every
// string in them and in the path parameters is normalised to Unicode NFC, so equal text is stored
// and compared as equal bytes.
// Nothing is trimmed silently: a field that must not have surrounding spaces says so in its
// schema (`pattern`), and emails are normalised by their own rule (auth/user-store.ts).

import type { FastifyInstance, FastifyRequest } from "fastify";
import fp from "fastify-plugin";
import { Problem } from "./problem.ts";

/** Deeper JSON is refused rather than walked: no API shape nests anywhere near this. */
export const MAX_DEPTH = 32;

function forbiddenKey(key: string): boolean {
  return key.startsWith("$") || key.includes(".");
}

// Text below U+0300 (Latin-1 and Latin Extended) is already NFC; only the rest goes through ICU.
const MAY_DENORMALISE = /[\u0300-\u{10ffff}]/u;

/**
 * Parsed JSON is plain objects and arrays, a parsed query string an object whose prototype has no
 * prototype; a Buffer or a stream body is left alone.
 */
function isPlainContainer(value: unknown): value is Record<string | number, unknown> {
  if (value === null || typeof value !== "object") return false;
  if (Array.isArray(value)) return true;
  const prototype: object | null = Object.getPrototypeOf(value);
  return prototype === Object.prototype || prototype === null || Object.getPrototypeOf(prototype) === null;
}

function normalised(text: string): string {
  return MAY_DENORMALISE.test(text) ? text.normalize("NFC") : text;
}

/** Walks a parsed JSON value; the path of keys is kept as a stack and joined only for an error. */
class Cleaner {
  private readonly path: Array<string | number> = [];

  /** allowKeys: keys are the wire validators' business (a `wireChecked` route); only depth and NFC apply. */
  constructor(
    private readonly where: string,
    private readonly allowKeys = false,
  ) {}

  /** The value with its strings in NFC; objects and arrays are changed in place. */
  clean(value: unknown): unknown {
    if (typeof value === "string") return normalised(value);
    if (isPlainContainer(value)) this.walk(value);
    return value;
  }

  private walk(container: Record<string | number, unknown>): void {
    if (this.path.length >= MAX_DEPTH) {
      throw new Problem(400, "too_deep", `${this.where} nests deeper than ${MAX_DEPTH} levels`);
    }
    if (Array.isArray(container)) {
      for (let i = 0; i < container.length; i++) this.visit(container, i);
      return;
    }
    for (const key of Object.keys(container)) {
      if (!this.allowKeys && forbiddenKey(key)) {
        this.path.push(key);
        throw new Problem(
          400,
          "forbidden_key",
          `${this.where} key "${this.path.join("/")}" may not begin with "$" or contain "."`,
        );
      }
      this.visit(container, key);
    }
  }

  private visit(container: Record<string | number, unknown>, key: string | number): void {
    const item = container[key];
    // Numbers, booleans and null are most of a telemetry body: nothing to do for them.
    if (typeof item === "string") {
      container[key] = normalised(item);
    } else if (isPlainContainer(item)) {
      this.path.push(key);
      this.walk(item);
      this.path.pop();
    }
  }
}

export function cleanInput(request: FastifyRequest): void {
  request.body = new Cleaner("body", request.routeOptions.config.wireChecked === true).clean(request.body);
  request.query = new Cleaner("query").clean(request.query);
  // Path parameters' names come from the route, so only their values need normalising.
  const params = request.params as Record<string, unknown> | undefined;
  if (params) for (const name of Object.keys(params)) params[name] = new Cleaner("path").clean(params[name]);
}

declare module "fastify" {
  interface FastifyContextConfig {
    /**
     * The body's free-form parts are checked item by item by the wire contract's validators, which
     * refuse any key outside the contract: an item with a `$` or dotted key is rejected on its own,
     * like any other bad item, instead of the whole request with 400, and none reaches the database.
     */
    wireChecked?: boolean;
  }
}

async function hygiene(app: FastifyInstance): Promise<void> {
  app.addHook("preValidation", async (request) => cleanInput(request));
}

export const inputHygienePlugin = fp(hygiene, { name: "input-hygiene" });
