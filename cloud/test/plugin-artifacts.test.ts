// Plugins in the artifact registry: an example plugin built from AssemblyScript is stored with the
// metrics it declares and signed with the organization's key in the same manifest as firmware; a
// module the device's host would refuse (not WebAssembly, an import outside the host API or with
// another signature, an entry point missing or of the wrong type, too much memory, too large) is
// refused at upload with a clear problem document, and nothing is stored.

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { PLUGIN_LIMITS } from "@kestrel/wire";
import { parseArtifactManifest } from "@kestrel/wire/artifacts";
import type { FastifyInstance } from "fastify";
import { leb128 } from "../../firmware/plugins/wasm-sections.ts";
import { checkPluginModule } from "../src/artifacts/plugin-validator.ts";
import { bearer, bootstrapTenant, login, startTestCloud, type TestCloud } from "./helpers.ts";

const PLUGINS = join(import.meta.dirname, "..", "..", "firmware", "build", "plugins");

function built(name: string): Buffer {
  return readFileSync(join(PLUGINS, `${name}.wasm`));
}

// --- a few hand-made modules, for the cases the compiler never produces --------------------------

const I32 = 0x7f;
const F64 = 0x7c;

const text = (value: string): number[] => [...leb128(value.length), ...Buffer.from(value)];
const vector = (items: number[][]): number[] => [...leb128(items.length), ...items.flat()];
const section = (id: number, body: number[]): number[] => [id, ...leb128(body.length), ...body];

interface ModuleSpec {
  /** Function types: [params, results]. */
  types: Array<[number[], number[]]>;
  imports?: Array<{ module: string; name: string; type: number }>;
  /** The module's own functions, by type index (each body: `i32.const 0` when it returns i32, else empty). */
  functions: number[];
  memoryPages?: number;
  exports: Array<{ name: string; function: number }>;
}

function wasmModule(spec: ModuleSpec): Buffer {
  const bytes = [0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00];
  bytes.push(
    ...section(
      1,
      vector(
        spec.types.map(([params, results]) => [
          0x60,
          ...vector(params.map((p) => [p])),
          ...vector(results.map((r) => [r])),
        ]),
      ),
    ),
  );
  if (spec.imports)
    bytes.push(
      ...section(2, vector(spec.imports.map((i) => [...text(i.module), ...text(i.name), 0x00, ...leb128(i.type)]))),
    );
  bytes.push(...section(3, vector(spec.functions.map((type) => leb128(type)))));
  if (spec.memoryPages !== undefined) bytes.push(...section(5, vector([[0x00, ...leb128(spec.memoryPages)]])));
  bytes.push(...section(7, vector(spec.exports.map((e) => [...text(e.name), 0x00, ...leb128(e.function)]))));
  const bodies = spec.functions.map((type) => {
    const returnsI32 = spec.types[type]?.[1][0] === I32;
    const code = [0x00, ...(returnsI32 ? [0x41, 0x00] : []), 0x0b];
    return [...leb128(code.length), ...code];
  });
  bytes.push(...section(10, vector(bodies)));
  return Buffer.from(bytes);
}

/** init() → i32 and on_sample(), importing kestrel.now as the host offers it. */
const VALID: ModuleSpec = {
  types: [
    [[], [I32]],
    [[], []],
    [[], [F64]],
  ],
  imports: [{ module: "kestrel", name: "now", type: 2 }],
  functions: [0, 1],
  memoryPages: 1,
  exports: [
    { name: "init", function: 1 },
    { name: "on_sample", function: 2 },
  ],
};

function upload(app: FastifyInstance, token: string, body: Buffer, query: Record<string, string> = {}) {
  const search = new URLSearchParams({
    kind: "plugin",
    name: "dewpoint",
    version: "1.0.0",
    metrics: "dew_point",
    ...query,
  });
  return app.inject({
    method: "POST",
    url: `/api/artifacts?${search}`,
    headers: { ...bearer(token), "content-type": "application/octet-stream" },
    payload: body,
  });
}

describe("plugin artifacts", () => {
  let cloud: TestCloud;
  let token: string;

  before(async () => {
    cloud = await startTestCloud();
    const acme = await bootstrapTenant(cloud.db, "Acme", ["dev-1"]);
    token = await login(cloud.app, acme.admin.email);
  });
  after(() => cloud?.close());

  async function storedNothing(): Promise<void> {
    assert.equal(await cloud.db.collection("artifact_blobs.files").countDocuments({}), 0, "no GridFS file");
    assert.equal(await cloud.db.collection("artifacts").countDocuments({}), 0, "no registry entry");
  }

  test("the module checks: each way a module can break the host's contract has its own message", () => {
    assert.deepEqual(checkPluginModule(wasmModule(VALID)), { ok: true });
    for (const example of ["smoothing", "dewpoint", "threshold"])
      assert.deepEqual(checkPluginModule(built(example)), { ok: true }, example);
    const refusal = (module: Buffer) => {
      const result = checkPluginModule(module);
      return result.ok ? "accepted" : `${result.error.code}: ${result.error.message}`;
    };
    assert.equal(
      refusal(built("unknown-import")),
      "forbidden_import: imports env.system, which the host API does not offer",
    );
    assert.equal(
      refusal(wasmModule({ ...VALID, imports: [{ module: "kestrel", name: "now", type: 0 }] })),
      "wrong_signature: imports kestrel.now as i(), the host offers F()",
    );
    assert.equal(
      refusal(wasmModule({ ...VALID, imports: [{ module: "kestrel", name: "reboot", type: 1 }] })),
      "forbidden_import: imports kestrel.reboot, which the host API does not offer",
    );
    assert.equal(
      refusal(wasmModule({ ...VALID, exports: [{ name: "init", function: 1 }] })),
      "missing_export: exports no function on_sample (the device calls on_sample())",
    );
    assert.equal(
      refusal(
        wasmModule({
          ...VALID,
          exports: [
            { name: "init", function: 2 },
            { name: "on_sample", function: 2 },
          ],
        }),
      ),
      "wrong_signature: exports init as v(), the device calls it as i()",
    );
    assert.equal(
      refusal(wasmModule({ ...VALID, memoryPages: PLUGIN_LIMITS.memoryPages + 1 })),
      "memory_too_large: asks for 2 pages of memory at start, a plugin gets 1 (64 KiB each)",
    );
    assert.match(refusal(Buffer.from("not wasm at all")), /^invalid_module: not a valid WebAssembly module: /);
    const truncated = built("dewpoint").subarray(0, 500);
    assert.match(refusal(truncated), /^invalid_module: /);
  });

  test("a refused module is a 422 problem document and leaves nothing stored; bad declarations are 400", async () => {
    const oversized = Buffer.concat([built("smoothing"), Buffer.alloc(PLUGIN_LIMITS.moduleBytes)]);
    const cases: Array<[string, Buffer, Record<string, string>, number, RegExp]> = [
      ["unknown import", built("unknown-import"), {}, 422, /^forbidden_import: imports env\.system/],
      ["not WebAssembly", Buffer.from("#!/bin/sh\n"), {}, 422, /^invalid_module/],
      ["too large", oversized, {}, 422, /^too_large: a plugin is at most 16384 bytes/],
      ["no on_sample", wasmModule({ ...VALID, exports: [{ name: "init", function: 1 }] }), {}, 422, /missing_export/],
      ["a name no plugin may have", built("dewpoint"), { name: "Dew-Point" }, 400, /^invalid_name/],
      ["no version", built("dewpoint"), { version: "" }, 400, /^invalid_version/],
      ["a metric with the separator", built("dewpoint"), { metrics: "dew__point" }, 400, /^invalid_metrics/],
      ["five metrics", built("dewpoint"), { metrics: "a,b,c,d,e" }, 400, /^invalid_metrics/],
    ];
    for (const [what, body, query, status, detail] of cases) {
      const response = await upload(cloud.app, token, body, query);
      assert.equal(response.statusCode, status, `${what}: ${response.body}`);
      assert.equal(response.headers["content-type"], "application/problem+json; charset=utf-8", what);
      assert.match(response.json().detail, detail, what);
      await storedNothing();
    }
  });

  test("an example plugin is stored with its metrics, runs on any chip, and is signed in the firmware's manifest", async () => {
    const response = await upload(cloud.app, token, built("dewpoint"));
    assert.equal(response.statusCode, 201, response.body);
    const view = response.json();
    assert.deepEqual(
      { kind: view.kind, name: view.name, version: view.version, target: view.target, metrics: view.metrics },
      { kind: "plugin", name: "dewpoint", version: "1.0.0", target: { chip: "*", board: "*" }, metrics: ["dew_point"] },
    );
    const key = await cloud.app.inject({ method: "POST", url: "/api/signing/keys", headers: bearer(token) });
    assert.equal(key.statusCode, 201, key.body);
    const signed = await cloud.app.inject({
      method: "POST",
      url: `/api/artifacts/${view.artifactId}/signatures`,
      headers: bearer(token),
    });
    assert.equal(signed.statusCode, 201, signed.body);
    const manifest = parseArtifactManifest(signed.json().manifest.text);
    assert.ok(manifest.ok, manifest.ok ? "" : manifest.error.message);
    assert.deepEqual(
      { kind: manifest.value.kind, sha256: manifest.value.sha256, metrics: manifest.value.metrics },
      { kind: "plugin", sha256: view.sha256, metrics: ["dew_point"] },
    );
  });
});
