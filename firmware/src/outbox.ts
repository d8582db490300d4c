// Bounded FIFO of serialized telemetry batches waiting for the broker. RAM only for now (a flash
// ring comes later); when full, the oldest batch is dropped so fresh data keeps flowing.

export default class Outbox {
  readonly capacity: number;
  #items: (string | undefined)[];
  #head = 0;
  #size = 0;
  #dropped = 0;

  constructor(capacity: number) {
    if (!Number.isInteger(capacity) || capacity < 1)
      throw new RangeError(`outbox: capacity must be >= 1, got ${capacity}`);
    this.capacity = capacity;
    this.#items = new Array<string | undefined>(capacity).fill(undefined);
  }

  get size(): number {
    return this.#size;
  }

  /** Batches dropped because the outbox was full, since boot. */
  get dropped(): number {
    return this.#dropped;
  }

  /** Appends item; returns true when the oldest item had to be dropped to make room. */
  push(item: string): boolean {
    let dropped = false;
    if (this.#size === this.capacity) {
      this.#items[this.#head] = undefined;
      this.#head = (this.#head + 1) % this.capacity;
      this.#size--;
      this.#dropped++;
      dropped = true;
    }
    this.#items[(this.#head + this.#size) % this.capacity] = item;
    this.#size++;
    return dropped;
  }

  peek(): string | undefined {
    return this.#size === 0 ? undefined : this.#items[this.#head];
  }

  shift(): string | undefined {
    if (this.#size === 0) return undefined;
    const item = this.#items[this.#head];
    this.#items[this.#head] = undefined;
    this.#head = (this.#head + 1) % this.capacity;
    this.#size--;
    return item;
  }
}
