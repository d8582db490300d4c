// kestrel/wasm-instance: one WebAssembly module in its own wasm3 runtime (native/wasm/wasm-instance.c).
// On the ESP32 xsc binds `Native`/`native` to the C linked into the firmware; in the simulator the
// same C runs in the XS worker and the runtime supplies `Native`/`native` over it, so this module is
// the same on both.

/** A host function a module may import, by "module.field", with its wasm3 signature ("F(ii)"). */
export interface WasmImport {
  signature: string;
  fn: (...args: number[]) => number | undefined;
}

export interface WasmLimits {
  /** Linear memory, in 64 KiB pages: a module needing more is refused; memory.grow past it fails. */
  memoryPages: number;
  /** wasm3's value stack for calls, bytes: deeper recursion traps. */
  stackBytes: number;
  /** Loop iterations and calls one call (and the start function) may run before it traps. */
  fuel: number;
}

/** The message of the trap a call gets when its budget runs out. */
export const BUDGET_TRAP = "[trap] execution budget exhausted";

export default class WasmInstance extends Native("xs_wasm_instance_destructor") {
  readonly #functions: WasmImport["fn"][];

  /** Throws with the reason when the module is malformed, over a limit, or imports what is not offered. */
  constructor(bytes: ArrayBuffer, limits: WasmLimits, imports: Readonly<Record<string, WasmImport>>) {
    super();
    const names = Object.keys(imports);
    const signatures = names.map((name) => (imports[name] as WasmImport).signature);
    this.#functions = names.map((name) => (imports[name] as WasmImport).fn);
    native("xs_wasm_instance").call(
      this,
      bytes,
      limits.memoryPages,
      limits.stackBytes,
      names,
      signatures,
      this.#functions,
      limits.fuel,
    );
  }

  /** Calls an export with at most `fuel` loop iterations and calls; throws the trap's message. */
  call(name: string, fuel: number, ...args: number[]): number | undefined {
    return native("xs_wasm_instance_call").call(this, this.#functions, name, fuel, ...args) as number | undefined;
  }

  hasExport(name: string): boolean {
    return native("xs_wasm_instance_has_export").call(this, name) as boolean;
  }

  /** UTF-8 text in linear memory, during a host function call (1 KiB at most). */
  string(offset: number, length: number): string {
    return native("xs_wasm_instance_string").call(this, offset, length) as string;
  }

  /** The linear memory's size now, bytes. */
  get memoryBytes(): number {
    return native("xs_wasm_instance_get_memory_bytes").call(this) as number;
  }

  /** Budget the last call (or the start function) used. */
  get fuelUsed(): number {
    return native("xs_wasm_instance_get_fuel_used").call(this) as number;
  }

  /** Frees the runtime and its memory now rather than at garbage collection. */
  close(): void {
    native("xs_wasm_instance_close").call(this);
  }
}
