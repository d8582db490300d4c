// Simulated ECMA-419 `system` module: restart asks the Node parent to reset the board, which stops
// this XS machine and boots a fresh one from the same flash.

import host from "kestrel-sim:host";

const System = {
  restart(): void {
    host.call("system.restart");
  },
};

export default System;
