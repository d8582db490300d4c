// Simulated Moddable `instrumentation` module: the counters by the SDK's names; the XS heap counters
// come from the simulated chip's engine meters (answered by the Node parent), every other counter is
// absent (undefined), as in a build that does not have it.

import host from "kestrel-sim:host";

/** The SDK's counter names, index 0 unused, in the order the ESP32 build numbers them. */
const NAMES: readonly string[] = Object.freeze([
  "",
  "Pixels Drawn",
  "Frames Drawn",
  "Network Bytes Read",
  "Network Bytes Written",
  "Network Sockets",
  "Timers",
  "Files",
  "Poco Display List Used",
  "Piu Command List Used",
  "Turns",
  "System Free Memory",
  "CPU 0",
  "CPU 1",
  "XS Slot Heap Used",
  "XS Chunk Heap Used",
  "XS Keys Used",
  "XS Garbage Collection Count",
  "XS Modules Loaded",
  "XS Stack Used",
  "XS Promises Settled",
]);

// biome-ignore lint/complexity/noStaticOnlyClass: the SDK's Instrumentation is a class with static members, and the simulated one must be too.
export default class Instrumentation {
  static get(what: number | undefined): number | undefined {
    const name = what === undefined ? undefined : NAMES[what];
    if (!name) return undefined;
    return host.call("instrumentation.get", { name }) as number | undefined;
  }

  static map(name: string): number | undefined {
    const index = NAMES.indexOf(String(name));
    return index > 0 ? index : undefined;
  }

  static name(index: number | undefined): string | undefined {
    return index === undefined ? undefined : NAMES[index] || undefined;
  }
}
