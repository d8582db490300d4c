// What the xsnap worker offers the simulator runtime (XS 13 Compartment API with an options bag, and
// xsnap's synchronous channel to the Node parent). Only the boot module sees these.

declare class ModuleSource {
  constructor(source: string);
}

type ModuleDescriptor = { source: ModuleSource } | { namespace: object };

interface CompartmentOptions {
  // XS selects the options-bag constructor form by this marker.
  __options__: true;
  globals?: Record<string, unknown>;
  resolveHook?: (specifier: string, referrer: string) => string;
  loadNowHook?: (specifier: string) => ModuleDescriptor;
}

declare class Compartment {
  constructor(options: CompartmentOptions);
  importNow(specifier: string): Record<string, unknown>;
}

/** Sends a message to the Node parent and blocks until its answer arrives. */
declare function issueCommand(message: ArrayBufferLike): ArrayBuffer;

/**
 * The C functions of our native modules by name, plus hostObject(destructor) for Native classes:
 * what the simulator's XS worker adds (firmware/sim/engine/worker/kestrel-natives.c).
 */
declare const kestrelNatives:
  | ({ hostObject(destructor: string): object; mallocBytes(): number } & Record<string, unknown>)
  | undefined;
