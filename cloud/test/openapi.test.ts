import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { Validator } from "@seriousme/openapi-schema-validator";
import { startTestCloud, type TestCloud } from "./helpers.ts";

interface Operation {
  operationId?: string;
  summary?: string;
  parameters?: Array<{ in: string; name: string }>;
  security?: Array<Record<string, string[]>>;
  requestBody?: { content: Record<string, { examples?: object; example?: unknown; schema?: unknown }> };
  responses: Record<string, { description?: string }>;
}

/** Fastify's `/a/:b` as OpenAPI writes it, `/a/{b}`. */
function openApiPath(url: string): string {
  return url.replace(/:([A-Za-z0-9_]+)/g, "{$1}");
}

describe("OpenAPI document", () => {
  let cloud: TestCloud;
  let document: {
    openapi: string;
    info: { license?: { name: string } };
    servers?: Array<{ url: string }>;
    paths: Record<string, Record<string, Operation>>;
    components: object;
  };

  before(async () => {
    cloud = await startTestCloud();
    const response = await cloud.app.inject({ method: "GET", url: "/docs/json" });
    assert.equal(response.statusCode, 200);
    document = response.json();
  });
  after(() => cloud?.close());

  test("validates as OpenAPI 3", async () => {
    const result = await new Validator().validate(document);
    assert.equal(result.valid, true, JSON.stringify(result.errors, null, 2));
    assert.match(document.openapi, /^3\./);
  });

  test("covers every /api route and nothing else, each with the security its access declaration says", () => {
    const expected = cloud.app.apiRoutes.map((route) => `${route.method} ${openApiPath(route.url)}`).sort();
    const documented = Object.entries(document.paths)
      .flatMap(([path, operations]) => Object.keys(operations).map((method) => `${method.toUpperCase()} ${path}`))
      .sort();
    assert.deepEqual(documented, expected);
    for (const route of cloud.app.apiRoutes) {
      const operation = document.paths[openApiPath(route.url)]?.[route.method.toLowerCase()];
      assert.ok(operation, `${route.method} ${route.url}`);
      const schemes = (operation.security ?? []).flatMap((requirement) => Object.keys(requirement)).sort();
      if (route.config.public) assert.deepEqual(schemes, [], route.url);
      else if (route.config.gateway) assert.deepEqual(schemes, ["apiKey", "gatewayKey"], route.url);
      else assert.ok(schemes.includes("session"), route.url);
      assert.ok(
        Object.keys(operation.responses).some((status) => status.startsWith("2")),
        `${route.method} ${route.url} documents its success answer`,
      );
      for (const [status, response] of Object.entries(operation.responses)) {
        // @fastify/swagger's placeholder when the response schema has no `description`.
        assert.notEqual(response.description, "Default Response", `${route.method} ${route.url} ${status} description`);
      }
    }
  });

  test("names its servers and licence; every operation has a unique operationId and a summary", () => {
    assert.deepEqual(document.servers, [{ url: "/", description: "This deployment" }]);
    assert.equal(document.info.license?.name, "Apache-2.0");
    const ids = new Set<string>();
    for (const [path, operations] of Object.entries(document.paths)) {
      for (const [method, operation] of Object.entries(operations)) {
        assert.match(operation.operationId ?? "", /^[a-z]+[A-Za-z0-9]*$/, `${method} ${path} operationId`);
        assert.ok(
          !ids.has(operation.operationId ?? ""),
          `${method} ${path}: operationId ${operation.operationId} repeats`,
        );
        ids.add(operation.operationId ?? "");
        assert.ok((operation.summary ?? "").length > 10, `${method.toUpperCase()} ${path} has a summary`);
      }
    }
  });

  test("every operation documents the statuses the layers in front of it can answer", () => {
    for (const route of cloud.app.apiRoutes) {
      const operation = document.paths[openApiPath(route.url)]?.[route.method.toLowerCase()];
      assert.ok(operation);
      const what = `${route.method} ${route.url}`;
      const statuses = Object.keys(operation.responses);
      const expected = ["429", "431"];
      if (!route.config.public) expected.push("401");
      if (operation.requestBody) expected.push("400", "413", "415");
      if (route.url.includes(":")) expected.push("400", "414");
      for (const status of expected) assert.ok(statuses.includes(status), `${what} documents ${status}`);
    }
  });

  test("every JSON request body carries an example, every other one is bytes", () => {
    for (const [path, operations] of Object.entries(document.paths)) {
      for (const [method, operation] of Object.entries(operations)) {
        if (!operation.requestBody) continue;
        const media = operation.requestBody.content["application/json"];
        if (media) {
          assert.ok(media.examples ?? media.example, `${method.toUpperCase()} ${path} has a body example`);
        } else {
          // A streamed upload (an artifact's bytes).
          for (const [type, other] of Object.entries(operation.requestBody.content))
            assert.deepEqual(
              other.schema,
              { type: "string", format: "binary" },
              `${method.toUpperCase()} ${path} ${type}`,
            );
        }
      }
    }
  });

  test("Swagger UI is served from the package's own assets under a strict CSP", async () => {
    const page = await cloud.app.inject({ method: "GET", url: "/docs/" });
    assert.equal(page.statusCode, 200);
    assert.doesNotMatch(page.body, /https?:\/\//, "no asset from another origin");
    const csp = String(page.headers["content-security-policy"]);
    assert.match(csp, /script-src 'self'(;|$)/);
    assert.match(csp, /frame-ancestors 'none'/);
    const bundle = await cloud.app.inject({ method: "GET", url: "/docs/static/swagger-ui-bundle.js" });
    assert.equal(bundle.statusCode, 200);
    assert.match(String(bundle.headers["content-type"]), /javascript/);
  });
});
