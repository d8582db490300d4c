// Simulated Moddable `net` module: what the simulated board's Wi-Fi station reports (the Node parent's
// model); properties the simulator does not model answer undefined, as the SDK's do when unknown.

import host from "kestrel-sim:host";

// biome-ignore lint/complexity/noStaticOnlyClass: the SDK's Net is a class with static members, and the simulated one must be too.
export default class Net {
  static get(what: string): unknown {
    return host.call("net.get", { what: String(what) });
  }
}
