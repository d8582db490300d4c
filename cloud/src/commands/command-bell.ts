// Wakes a tenant's waiting long polls when this replica queues a command, so a
// command reaches a connected device at once; other replicas' commands are found
// by the waiters' periodic re-check, as there are no change streams on FerretDB.

export class CommandBell {
  private readonly waiters = new Map<string, Set<() => void>>();
  private closed = false;

  ring(tenantId: string): void {
    for (const wake of this.waiters.get(tenantId) ?? []) wake();
  }

  /** Resolves after ms, on a ring for the tenant, on abort, or at once when closed. */
  wait(tenantId: string, ms: number, signal: AbortSignal): Promise<void> {
    if (this.closed || signal.aborted) return Promise.resolve();
    return new Promise((resolve) => {
      const set = this.waiters.get(tenantId) ?? new Set();
      this.waiters.set(tenantId, set);
      const timer = setTimeout(done, ms);
      signal.addEventListener("abort", done, { once: true });
      function done(): void {
        clearTimeout(timer);
        signal.removeEventListener("abort", done);
        set.delete(done);
        resolve();
      }
      set.add(done);
    });
  }

  /** Ends every wait now and every later one at once: the server is shutting down. */
  close(): void {
    this.closed = true;
    for (const set of this.waiters.values()) for (const wake of [...set]) wake();
  }

  get isClosed(): boolean {
    return this.closed;
  }
}
