// The part of @webassemblyjs/wasm-parser's AST the plugin validator reads (the package ships no types).

declare module "@webassemblyjs/wasm-parser" {
  export interface Signature {
    params: Array<{ valtype: string }>;
    results: string[];
  }

  export type ModuleField =
    | {
        type: "ModuleImport";
        module: string;
        name: string;
        descr: { type: "FuncImportDescr"; signature: Signature } | { type: "Memory" | "Table" | "GlobalType" };
      }
    | { type: "Func"; signature: Signature }
    | { type: "Memory"; limits: { min: number; max?: number } }
    | { type: "ModuleExport"; name: string; descr: { exportType: string; id: { value: number } } }
    | { type: "TypeInstruction" | "Global" | "Start" | "Table" | "Elem" | "Data" };

  export interface Program {
    body: Array<{ type: "Module"; fields: ModuleField[] }>;
  }

  export function decode(
    bytes: Uint8Array,
    options?: { ignoreCodeSection?: boolean; ignoreDataSection?: boolean; ignoreCustomNameSection?: boolean },
  ): Program;
}
