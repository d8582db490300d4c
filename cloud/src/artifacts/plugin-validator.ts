// Content check for kind `plugin`: the bytes must be a WebAssembly module the device's plugin host
// will load (firmware/src/plugin-host.ts): valid (V8 validates it), at most one storage slot,
// importing only the host API's functions with their exact signatures, exporting init() → i32 and
// on_sample(), and asking for no more linear memory than a plugin gets. Refused here, a module
// never reaches a signature, let alone a device (which checks all of it again when it loads it).

/// <reference path="./wasm-parser.d.ts" />

import {
  isPluginMetricList,
  isPluginName,
  PLUGIN_ENTRY_POINTS,
  PLUGIN_HOST_API,
  PLUGIN_HOST_MODULE,
  PLUGIN_LIMITS,
  type WireError,
} from "@kestrel/wire";
import { isSemver } from "@kestrel/wire/artifacts";
import { decode, type ModuleField, type Signature } from "@webassemblyjs/wasm-parser";
import type { ArtifactValidator, CheckResult, DeclaredArtifact } from "./validators.ts";

const VALUE_TYPES: Readonly<Record<string, string>> = { i32: "i", i64: "I", f32: "f", f64: "F" };

/** A function type in wasm3's notation, the one PLUGIN_HOST_API uses: "F(ii)", "v()". */
function notation(signature: Signature): string {
  const params = signature.params.map((param) => VALUE_TYPES[param.valtype] ?? "?").join("");
  const result =
    signature.results.length === 0 ? "v" : signature.results.map((type) => VALUE_TYPES[type] ?? "?").join("");
  return `${result}(${params})`;
}

function refused(code: string, message: string): { ok: false; error: WireError } {
  return { ok: false, error: { code, message } };
}

/** What the upload must declare for a plugin: a plugin name, a semantic version, its metrics. */
function declaredError(declared: DeclaredArtifact): WireError | undefined {
  if (!isPluginName(declared.name))
    return {
      code: "invalid_name",
      message: `a plugin's name is 1..${PLUGIN_LIMITS.nameLength} of a-z 0-9, starting with a letter`,
    };
  if (declared.version === undefined || !isSemver(declared.version))
    return { code: "invalid_version", message: "a plugin needs version=, a semantic version" };
  if (!isPluginMetricList(declared.metrics ?? []))
    return {
      code: "invalid_metrics",
      message: `metrics= lists at most ${PLUGIN_LIMITS.metricsPerPlugin} distinct names of a-z 0-9 _ (no "__"), 1..${PLUGIN_LIMITS.metricNameLength} long`,
    };
  return undefined;
}

/** The module's imports, memory and entry points against the host's contract. */
export function checkPluginModule(module: Uint8Array): { ok: true } | { ok: false; error: WireError } {
  // A copy on an ArrayBuffer of its own, as WebAssembly wants it (at most one slot, 16 KiB).
  const bytes = new Uint8Array(module);
  try {
    new WebAssembly.Module(bytes);
  } catch (error) {
    return refused("invalid_module", `not a valid WebAssembly module: ${(error as Error).message}`);
  }
  const fields: ModuleField[] =
    decode(bytes, { ignoreCodeSection: true, ignoreDataSection: true, ignoreCustomNameSection: true }).body[0]
      ?.fields ?? [];
  /** Function signatures by index: imports first, then the module's own, as wasm numbers them. */
  const functions: Signature[] = [];
  for (const field of fields) {
    if (field.type === "ModuleImport") {
      const what = `${field.module}.${field.name}`;
      if (field.descr.type !== "FuncImportDescr")
        return refused("forbidden_import", `imports ${what}, which is not a function: the host offers only functions`);
      const wanted = (PLUGIN_HOST_API as Readonly<Record<string, string>>)[field.name];
      if (field.module !== PLUGIN_HOST_MODULE || wanted === undefined)
        return refused("forbidden_import", `imports ${what}, which the host API does not offer`);
      const got = notation(field.descr.signature);
      if (got !== wanted) return refused("wrong_signature", `imports ${what} as ${got}, the host offers ${wanted}`);
      functions.push(field.descr.signature);
    } else if (field.type === "Func") functions.push(field.signature);
    else if (field.type === "Memory" && field.limits.min > PLUGIN_LIMITS.memoryPages)
      return refused(
        "memory_too_large",
        `asks for ${field.limits.min} pages of memory at start, a plugin gets ${PLUGIN_LIMITS.memoryPages} (64 KiB each)`,
      );
  }
  for (const [entry, wanted] of Object.entries(PLUGIN_ENTRY_POINTS)) {
    const exported = fields.find(
      (field): field is Extract<ModuleField, { type: "ModuleExport" }> =>
        field.type === "ModuleExport" && field.name === entry,
    );
    const signature = exported?.descr.exportType === "Func" ? functions[exported.descr.id.value] : undefined;
    if (!signature)
      return refused("missing_export", `exports no function ${entry} (the device calls ${entry}${wanted.slice(1)})`);
    const got = notation(signature);
    if (got !== wanted)
      return refused("wrong_signature", `exports ${entry} as ${got}, the device calls it as ${wanted}`);
  }
  return { ok: true };
}

export const pluginValidator: ArtifactValidator = {
  kind: "plugin",
  checkDeclared: declaredError,
  begin(declared) {
    const parts: Uint8Array[] = [];
    let size = 0;
    return {
      write: (bytes) => {
        size += bytes.length;
        if (size > PLUGIN_LIMITS.moduleBytes)
          return {
            code: "too_large",
            message: `a plugin is at most ${PLUGIN_LIMITS.moduleBytes} bytes (one storage slot)`,
          };
        parts.push(bytes);
        return undefined;
      },
      end: (): CheckResult => {
        const checked = checkPluginModule(Buffer.concat(parts));
        if (!checked.ok) return checked;
        return { ok: true, version: declared.version as string, details: {} };
      },
    };
  },
};
