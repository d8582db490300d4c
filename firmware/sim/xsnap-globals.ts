// @agoric/xsnap's modules use the HardenedJS globals (assert, harden, HandledPromise) as they load.
// We install them without calling lockdown(), so importing the simulator leaves the intrinsics of
// the host process (a gateway or e2e test) mutable. Import this module before @agoric/xsnap.

import "@endo/init/pre-remoting.js";
import harden from "@endo/harden";

const globals = globalThis as { harden?: unknown };
if (typeof globals.harden !== "function") {
  // The first call makes @endo/harden pick its own deep-freezing fallback; installed before that
  // call, it would find itself on globalThis and recurse.
  harden({});
  globals.harden = harden;
}
