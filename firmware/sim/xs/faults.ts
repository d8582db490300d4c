// Simulated fault hooks: asks the Node parent whether a test made a firmware subsystem hang, either
// skipping its work or spinning forever (a driver polling a status bit that never changes), which
// blocks the main loop until the simulated hardware watchdog resets the chip.

import host from "kestrel-sim:host";

const Faults = Object.freeze({
  hung(subsystem: string): boolean {
    const hang = host.call("faults.hung", { subsystem: String(subsystem) });
    if (hang === "spin") for (;;);
    return hang === "skip";
  },
});

export default Faults;
