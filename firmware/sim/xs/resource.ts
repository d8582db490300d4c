// Simulated Moddable `Resource`: the resources built into the firmware image (certificates, DER)
// come from the Node parent, which holds them per simulated device.

import host from "kestrel-sim:host";

export default class Resource {
  /** Bytes of the resource, what the simulated securesocket hands to the parent. */
  readonly bytes: number[];

  constructor(path: string) {
    const bytes = host.call("resource.read", { path: String(path) });
    if (!Array.isArray(bytes)) throw new Error(`resource ${path} not found`);
    this.bytes = bytes as number[];
  }

  static exists(path: string): boolean {
    return host.call("resource.exists", { path: String(path) }) === true;
  }
}
