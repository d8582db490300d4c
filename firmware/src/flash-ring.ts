// Bounded FIFO of serialized batches in a flash partition, for batches not yet confirmed by their
// receiver: survives reboot and power loss, sends oldest first, and when full erases the oldest
// sector and counts the samples it held as dropped.
//
// Layout: every sector starts with an 8-byte header (magic, generation); records follow, each a
// 4-byte header (length u16 LE, state, sample count) and the UTF-8 payload, padded to 4 bytes. NOR
// flash only clears bits between erases, so a record's state byte moves 0xFF (being written) →
// 0xFE (committed) → 0xFC (confirmed) in place; a torn write leaves 0xFF and is skipped after a reset.
//
// Two cursors: the read position (the oldest committed record) and the send position (the next
// record to send). Records between them are in flight: sent, awaiting the receiver's cumulative ack
// by (boot, seq), remembered in RAM only. An ack confirms them in order; a rewind (lost link, no ack
// in time) sends them again; after a reset they are committed records like any other.

import Flash from "flash";

const MAGIC = 0x4b535231; // "KSR1"
const SECTOR_HEADER = 8;
const RECORD_HEADER = 4;
const FREE = 0xffff;
const WRITING = 0xff;
const COMMITTED = 0xfe;
const CONFIRMED = 0xfc;
/** Records in flight at most: bounds the RAM list and how much a lost link makes the device send again. */
export const IN_FLIGHT_MAX = 16;

interface Position {
  sector: number;
  offset: number;
}

function align(length: number): number {
  return (length + 3) & ~3;
}

export default class FlashRing {
  readonly #flash: Flash;
  readonly #sectorSize: number;
  readonly #sectors: number;
  /** Generation of each sector, 0 when it holds no valid header. */
  readonly #generation: number[];
  readonly #header = new Uint8Array(RECORD_HEADER);
  #write: Position = { sector: 0, offset: SECTOR_HEADER };
  /** The oldest committed record (confirmed ones are behind it). */
  #read: Position = { sector: 0, offset: SECTOR_HEADER };
  /** The next record to send: records from #read up to here are in flight. */
  #send: Position = { sector: 0, offset: SECTOR_HEADER };
  /** Committed records, in flight or not. */
  #size = 0;
  /** Committed records at or after #send. */
  #unsent = 0;
  #dropped = 0;
  /** The payload at #send, kept so a send retried after back-pressure does not read flash again. */
  #peeked: string | undefined;
  // The in-flight records, oldest first, as a circular list in preallocated arrays: each one's
  // sector and the (boot, seq) its receiver acknowledges it by.
  readonly #flightSector = new Uint32Array(IN_FLIGHT_MAX);
  readonly #flightBoot = new Uint32Array(IN_FLIGHT_MAX);
  readonly #flightSeq = new Uint32Array(IN_FLIGHT_MAX);
  #flightHead = 0;
  #inFlight = 0;

  constructor(partition: string) {
    this.#flash = new Flash(partition);
    this.#sectorSize = this.#flash.blockSize;
    this.#sectors = Math.floor(this.#flash.byteLength / this.#sectorSize);
    if (this.#sectors < 2) throw new RangeError(`flash ring: partition ${partition} needs at least 2 sectors`);
    this.#generation = new Array<number>(this.#sectors).fill(0);
    this.#mount();
  }

  /** Batches not confirmed yet: in flight or waiting to be sent. */
  get size(): number {
    return this.#size;
  }

  /** Batches sent and awaiting their ack. */
  get inFlight(): number {
    return this.#inFlight;
  }

  /** Batches waiting to be sent. */
  get unsent(): number {
    return this.#unsent;
  }

  /** Samples dropped to make room since boot. */
  get dropped(): number {
    return this.#dropped;
  }

  /** The largest payload a record can hold, in bytes. */
  get maxPayload(): number {
    return this.#sectorSize - SECTOR_HEADER - RECORD_HEADER;
  }

  /** Appends a batch of samples; returns how many samples were dropped to make room (0 mostly). */
  push(batch: string, samples: number): number {
    const payload = ArrayBuffer.fromString(batch);
    const length = payload.byteLength;
    if (length > this.maxPayload) throw new RangeError(`flash ring: batch of ${length} bytes exceeds a sector`);
    const droppedBefore = this.#dropped;
    if (this.#write.offset + RECORD_HEADER + length > this.#sectorSize) this.#advanceWriteSector();
    const { sector, offset } = this.#write;
    const base = sector * this.#sectorSize + offset;
    const header = this.#header;
    header[0] = length & 0xff;
    header[1] = length >> 8;
    header[2] = WRITING;
    header[3] = samples & 0xff;
    this.#flash.write(base, RECORD_HEADER, header);
    this.#flash.write(base + RECORD_HEADER, length, payload);
    this.#setState(base, COMMITTED);
    this.#write = { sector, offset: offset + align(RECORD_HEADER + length) };
    if (this.#size === 0) this.#read = { sector, offset };
    if (this.#unsent === 0) this.#send = { sector, offset };
    this.#size++;
    this.#unsent++;
    return this.#dropped - droppedBefore;
  }

  /** The next batch to send, or undefined when every batch is in flight or confirmed. */
  peek(): string | undefined {
    if (this.#unsent === 0) return undefined;
    if (this.#peeked === undefined) {
      const base = this.#send.sector * this.#sectorSize + this.#send.offset;
      const length = this.#recordLength(base);
      this.#peeked = String.fromArrayBuffer(this.#flash.read(base + RECORD_HEADER, length) as ArrayBuffer);
    }
    return this.#peeked;
  }

  /**
   * The batch peek() returned was sent: it is in flight until an ack at or above (boot, seq)
   * confirms it. Throws when IN_FLIGHT_MAX are in flight already.
   */
  sent(boot: number, seq: number): void {
    if (this.#unsent === 0) return;
    if (this.#inFlight === IN_FLIGHT_MAX) throw new RangeError("flash ring: too many batches in flight");
    const slot = (this.#flightHead + this.#inFlight) % IN_FLIGHT_MAX;
    this.#flightSector[slot] = this.#send.sector;
    this.#flightBoot[slot] = boot;
    this.#flightSeq[slot] = seq;
    this.#inFlight++;
    this.#advanceSend();
  }

  /**
   * A cumulative ack: confirms, oldest first, every in-flight batch at or below (boot, seq), ordered
   * by boot then seq, and releases its record. Returns how many it confirmed.
   */
  confirm(boot: number, seq: number): number {
    let confirmed = 0;
    while (this.#inFlight > 0) {
      const head = this.#flightHead;
      const headBoot = this.#flightBoot[head] as number;
      if (headBoot > boot || (headBoot === boot && (this.#flightSeq[head] as number) > seq)) break;
      this.#release();
      this.#flightHead = (head + 1) % IN_FLIGHT_MAX;
      this.#inFlight--;
      confirmed++;
    }
    return confirmed;
  }

  /** The in-flight batches are to be sent again, oldest first (their acks were lost, or never came). */
  rewind(): void {
    this.#inFlight = 0;
    this.#send = { ...this.#read };
    this.#unsent = this.#size;
    this.#peeked = undefined;
  }

  /** For a ring whose records need no ack (logs): the next batch is done with at once. */
  shift(): void {
    if (this.#unsent === 0) return;
    if (this.#inFlight > 0) throw new RangeError("flash ring: shift with batches in flight");
    this.#release();
    this.#send = { ...this.#read };
    this.#unsent--;
    this.#peeked = undefined;
  }

  /** Marks the oldest record confirmed and moves the read position to the next committed one. */
  #release(): void {
    const { sector, offset } = this.#read;
    const base = sector * this.#sectorSize + offset;
    this.#setState(base, CONFIRMED);
    this.#size--;
    this.#read =
      this.#size === 0
        ? { ...this.#write }
        : this.#nextCommitted(sector, offset + align(RECORD_HEADER + this.#recordLength(base)));
  }

  #advanceSend(): void {
    const { sector, offset } = this.#send;
    this.#unsent--;
    this.#peeked = undefined;
    this.#send =
      this.#unsent === 0
        ? { ...this.#write }
        : this.#nextCommitted(
            sector,
            offset + align(RECORD_HEADER + this.#recordLength(sector * this.#sectorSize + offset)),
          );
  }

  #setState(base: number, state: number): void {
    const header = this.#header;
    header[0] = state;
    this.#flash.write(base + 2, 1, header.subarray(0, 1));
  }

  #recordLength(base: number): number {
    const bytes = new Uint8Array(this.#flash.read(base, 2) as ArrayBuffer);
    return (bytes[0] as number) | ((bytes[1] as number) << 8);
  }

  /** Reads the record header at (sector, offset): undefined at the end of the sector's records. */
  #recordAt(sector: number, offset: number): { length: number; state: number; samples: number } | undefined {
    if (offset + RECORD_HEADER > this.#sectorSize) return undefined;
    const bytes = new Uint8Array(this.#flash.read(sector * this.#sectorSize + offset, RECORD_HEADER) as ArrayBuffer);
    const length = (bytes[0] as number) | ((bytes[1] as number) << 8);
    if (length === FREE || offset + RECORD_HEADER + length > this.#sectorSize) return undefined;
    return { length, state: bytes[2] as number, samples: bytes[3] as number };
  }

  #erased(sector: number, offset: number): boolean {
    const length = Math.min(RECORD_HEADER, this.#sectorSize - offset);
    const bytes = new Uint8Array(this.#flash.read(sector * this.#sectorSize + offset, length) as ArrayBuffer);
    return bytes.every((byte) => byte === 0xff);
  }

  /** The first committed record at or after (sector, offset), following the ring to the writer. */
  #nextCommitted(sector: number, offset: number): Position {
    for (let visited = 0; visited <= this.#sectors; visited++) {
      if (this.#generation[sector] !== 0) {
        for (let record = this.#recordAt(sector, offset); record; record = this.#recordAt(sector, offset)) {
          if (record.state === WRITING) break;
          if (record.state === COMMITTED) return { sector, offset };
          offset += align(RECORD_HEADER + record.length);
        }
      }
      if (sector === this.#write.sector) break;
      sector = (sector + 1) % this.#sectors;
      offset = SECTOR_HEADER;
    }
    return { ...this.#write };
  }

  /** Moves the writer to the next sector, erasing it; unconfirmed batches there are the oldest and are dropped. */
  #advanceWriteSector(): void {
    const next = (this.#write.sector + 1) % this.#sectors;
    let droppedRecords = 0;
    if (this.#generation[next] !== 0) {
      for (
        let offset = SECTOR_HEADER, record = this.#recordAt(next, offset);
        record;
        record = this.#recordAt(next, offset)
      ) {
        if (record.state === WRITING) break;
        if (record.state === COMMITTED) {
          this.#dropped += record.samples;
          droppedRecords++;
        }
        offset += align(RECORD_HEADER + record.length);
      }
    }
    // The oldest records are the first in flight, so those lost with the sector lead the list.
    let droppedInFlight = 0;
    while (this.#inFlight > 0 && this.#flightSector[this.#flightHead] === next) {
      this.#flightHead = (this.#flightHead + 1) % IN_FLIGHT_MAX;
      this.#inFlight--;
      droppedInFlight++;
    }
    this.#size -= droppedRecords;
    this.#unsent -= droppedRecords - droppedInFlight;
    const generation = (this.#generation[this.#write.sector] as number) + 1;
    this.#format(next, generation);
    this.#write = { sector: next, offset: SECTOR_HEADER };
    this.#peeked = undefined;
    if (this.#read.sector === next || this.#size === 0)
      this.#read =
        this.#size === 0 ? { ...this.#write } : this.#nextCommitted((next + 1) % this.#sectors, SECTOR_HEADER);
    if (this.#unsent === 0) this.#send = { ...this.#write };
    else if (this.#send.sector === next) this.#send = { ...this.#read };
  }

  #format(sector: number, generation: number): void {
    this.#flash.erase(sector);
    const header = new DataView(new ArrayBuffer(SECTOR_HEADER));
    header.setUint32(0, MAGIC, true);
    header.setUint32(4, generation, true);
    this.#flash.write(sector * this.#sectorSize, SECTOR_HEADER, header.buffer);
    this.#generation[sector] = generation;
  }

  /** Finds the newest sector (the writer), its free space, the oldest committed record and the count. */
  #mount(): void {
    let newest = -1;
    for (let sector = 0; sector < this.#sectors; sector++) {
      const header = new DataView(this.#flash.read(sector * this.#sectorSize, SECTOR_HEADER) as ArrayBuffer);
      const generation = header.getUint32(0, true) === MAGIC ? header.getUint32(4, true) : 0;
      this.#generation[sector] = generation === 0xffffffff ? 0 : generation;
      if (this.#generation[sector] !== 0 && (newest < 0 || generation > (this.#generation[newest] as number)))
        newest = sector;
    }
    if (newest < 0) {
      this.#format(0, 1);
      this.#write = { sector: 0, offset: SECTOR_HEADER };
      this.#read = { ...this.#write };
      this.#send = { ...this.#write };
      return;
    }
    let offset = SECTOR_HEADER;
    for (let record = this.#recordAt(newest, offset); record; record = this.#recordAt(newest, offset)) {
      // A torn record's length cannot be trusted: nothing more is written in this sector.
      if (record.state === WRITING) {
        offset = this.#sectorSize;
        break;
      }
      offset += align(RECORD_HEADER + record.length);
    }
    // A header torn after its first byte reads as no record, yet that flash is no longer erased:
    // writing there would AND a new header into the old one.
    if (offset < this.#sectorSize && !this.#erased(newest, offset)) offset = this.#sectorSize;
    this.#write = { sector: newest, offset };
    let size = 0;
    for (let visited = 1; visited <= this.#sectors; visited++) {
      const sector = (newest + visited) % this.#sectors;
      if (this.#generation[sector] === 0) continue;
      for (let at = SECTOR_HEADER, record = this.#recordAt(sector, at); record; record = this.#recordAt(sector, at)) {
        if (record.state === WRITING) break;
        if (record.state === COMMITTED) size++;
        at += align(RECORD_HEADER + record.length);
      }
    }
    this.#size = size;
    this.#unsent = size;
    this.#read = this.#nextCommitted((newest + 1) % this.#sectors, SECTOR_HEADER);
    this.#send = { ...this.#read };
  }
}
