// Simulated `resetReason` module: the simulated chip's esp_reset_reason() code, which the Node
// parent sets when it powers the board on or resets it (restart, watchdog, crash).

import host from "kestrel-sim:host";

export default function getResetReason(): { reason: number; string: string } {
  return host.call("system.resetReason") as { reason: number; string: string };
}
