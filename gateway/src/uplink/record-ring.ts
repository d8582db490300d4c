// Where the disk queue's records not yet acknowledged lie, oldest first, in typed arrays that grow
// by doubling: no object a record. A busy queue holds each record from its append until the cloud
// answers for it (hundreds of milliseconds, tens of thousands of records), long enough for objects
// to be promoted and traced by the major GC, which took a twentieth of the gateway's CPU.

/** One record: its frame starts at `start` in its segment; `tag` is what the queue keeps with it. */
export interface RingEntry<T> {
  segment: number;
  start: number;
  length: number;
  tag: T | undefined;
}

const INITIAL_CAPACITY = 1024;

export class RecordRing<T> {
  private segments = new Float64Array(INITIAL_CAPACITY);
  private starts = new Float64Array(INITIAL_CAPACITY);
  private lengths = new Float64Array(INITIAL_CAPACITY);
  private tags: Array<T | undefined> = new Array(INITIAL_CAPACITY).fill(undefined);
  private head = 0;
  private count = 0;

  get length(): number {
    return this.count;
  }

  push(segment: number, start: number, length: number, tag?: T): void {
    if (this.count === this.segments.length) this.grow();
    const at = (this.head + this.count) % this.segments.length;
    this.segments[at] = segment;
    this.starts[at] = start;
    this.lengths[at] = length;
    this.tags[at] = tag;
    this.count++;
  }

  /** The i-th oldest record, or undefined past the end. */
  at(i: number): RingEntry<T> | undefined {
    if (i < 0 || i >= this.count) return undefined;
    const at = (this.head + i) % this.segments.length;
    return {
      segment: this.segments[at] as number,
      start: this.starts[at] as number,
      length: this.lengths[at] as number,
      tag: this.tags[at],
    };
  }

  /** Records [from, to) as entries, as Array.prototype.slice would. */
  slice(from: number, to: number): RingEntry<T>[] {
    const entries: RingEntry<T>[] = [];
    for (let i = Math.max(0, from); i < Math.min(to, this.count); i++) entries.push(this.at(i) as RingEntry<T>);
    return entries;
  }

  /** Forgets the `count` oldest records, handing each one's tag to `forget`. */
  shift(count: number, forget: (tag: T) => void): void {
    const n = Math.min(count, this.count);
    for (let i = 0; i < n; i++) {
      const at = (this.head + i) % this.segments.length;
      const tag = this.tags[at];
      this.tags[at] = undefined;
      if (tag !== undefined) forget(tag);
    }
    this.head = (this.head + n) % this.segments.length;
    this.count -= n;
  }

  private grow(): void {
    const capacity = this.segments.length * 2;
    const order = this.slice(0, this.count);
    this.segments = new Float64Array(capacity);
    this.starts = new Float64Array(capacity);
    this.lengths = new Float64Array(capacity);
    this.tags = new Array(capacity).fill(undefined);
    this.head = 0;
    this.count = 0;
    for (const entry of order) this.push(entry.segment, entry.start, entry.length, entry.tag);
  }
}
