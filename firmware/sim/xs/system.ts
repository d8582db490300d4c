// Simulated `system` module: like Moddable's (modules/io/system) it exports nothing and sets the global
// System; restart asks the Node parent to reset the board, which stops this XS machine and boots a
// fresh one from the same flash.

import host from "kestrel-sim:host";

// biome-ignore lint/complexity/noStaticOnlyClass: the SDK's System is a class with static members, and the simulated one must be too.
class System {
  static restart(): void {
    host.call("system.restart");
  }
}

(globalThis as { System?: typeof System }).System = System;
