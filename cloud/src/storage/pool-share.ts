// A share of a client's connections that background work may hold at once.
//
// The apply pass reads and writes with many commands in flight (point reads
// of buckets, rollups and latest values, then bounded bulk writes), and left
// alone it takes every connection of the client's pool: a request arriving
// meanwhile waits in the driver's queue behind the pass's commands. Work run
// `withinShare` sends its commands through the share instead (pointReads and
// the bounded writes ask `shared` for a slot), so it never holds more than
// `limit` connections and the rest of the pool stays free for requests.
//
// The share follows the work through its awaits (AsyncLocalStorage), so
// everything a pass calls (device updates, alert evaluation, the directory)
// is counted without passing the share down by hand.

import { AsyncLocalStorage } from "node:async_hooks";

export class PoolShare {
  private held = 0;
  private readonly waiting: Array<() => void> = [];

  constructor(readonly limit: number) {
    if (!Number.isInteger(limit) || limit < 1) throw new RangeError(`a pool share needs at least one slot: ${limit}`);
  }

  /** Runs `command` once the share has a free slot, holding the slot until it settles. */
  async run<T>(command: () => Promise<T>): Promise<T> {
    if (this.held < this.limit) this.held++;
    else await new Promise<void>((resolve) => this.waiting.push(resolve));
    try {
      return await command();
    } finally {
      // The slot passes straight to the next waiter, so none can be overtaken by a newcomer.
      const next = this.waiting.shift();
      if (next) next();
      else this.held--;
    }
  }
}

const current = new AsyncLocalStorage<PoolShare>();

/** Runs `work` with its database commands (those sent through `shared`) held to `share`. */
export function withinShare<T>(share: PoolShare, work: () => Promise<T>): Promise<T> {
  return current.run(share, work);
}

/** Sends one database command: through the share of the work it belongs to, if any. */
export function shared<T>(command: () => Promise<T>): Promise<T> {
  const share = current.getStore();
  return share ? share.run(command) : command();
}
