// Fault hooks the simulator overrides (sim/xs/faults) so tests can make a subsystem hang; on a
// device nothing is ever injected.

const Faults = Object.freeze({
  /** True while subsystem is made to hang: it skips its work and its watchdog heartbeat. */
  hung(_subsystem: string): boolean {
    return false;
  },
});

export default Faults;
