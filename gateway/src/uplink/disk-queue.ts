// The gateway's durable uplink queue: records appended to segment files and
// on disk (synchronous writes, O_DSYNC) before the caller is told they are safe, consumed in order, and
// forgotten only when acknowledged. Survives a crash at any instant.
//
// On disk, `<dir>/<20-digit segment number>.seg` files hold records framed as
// [u32 BE payload length][u32 BE CRC-32 of payload][payload]; `<dir>/cursor.slots`
// names the first record not yet acknowledged (CURSOR_SLOTS below; a queue written by an
// earlier version has a JSON `<dir>/cursor` instead, read once). A crash mid-write leaves at most
// a torn record at the end of the last segment, which the next open ignores
// (it was never acknowledged to anyone). A record whose CRC does not match is
// corruption: the rest of that segment cannot be framed reliably, so it is
// skipped and counted.
//
// Concurrent appends share one synchronous write (group commit): while one is
// in flight, new appends gather for the next. Memory holds only where
// each record is, not its payload: a backlog of any size costs a few dozen bytes
// a record, and peek reads payloads back from the segment files, except for the newest groups,
// kept in memory up to a bound (memoryBytes) so that a forwarder keeping up reads nothing back.

import { constants } from "node:fs";
import type { FileHandle } from "node:fs/promises";
import { mkdir, open, readdir, readFile, rm } from "node:fs/promises";
import { join } from "node:path";
import { crc32 } from "node:zlib";
import { writeBytes } from "../bytes.ts";
import { RecordRing, type RingEntry } from "./record-ring.ts";

const HEADER_BYTES = 8;
const SEGMENT_SUFFIX = ".seg";
/** The cursor of queues written before CURSOR_SLOTS_FILE: JSON, replaced by a temp file and a rename. */
const LEGACY_CURSOR_FILE = "cursor";
/**
 * The cursor is overwritten in place, one O_DSYNC write of a slot (a single system call where the
 * temp file, fsync and rename took seven): slots alternate, each in its own 512-byte sector and
 * checksummed, so a write torn by a crash leaves the other slot, the cursor before it, readable.
 * Slot: [u32 CRC-32 of the rest][f64 generation][f64 segment][f64 offset].
 */
const CURSOR_SLOTS_FILE = "cursor.slots";
const CURSOR_SLOT_STRIDE = 512;
const CURSOR_SLOT_BYTES = 28;
/** Recent groups' bytes kept in memory for peek, by default: a few seconds of a busy gateway's appends. */
const DEFAULT_MEMORY_BYTES = 4 * 1024 * 1024;
/** Larger records are a programming error: device payloads are far smaller. */
export const MAX_RECORD_BYTES = 16 * 1024 * 1024;

export class QueueFullError extends Error {
  readonly code = "queue_full";
}

export interface DiskQueueOptions {
  dir: string;
  /** Total bytes of segment files beyond which appends are refused. */
  maxBytes: number;
  /** A segment is closed and a new one started once it reaches this size. */
  segmentBytes?: number;
  /** Bytes of the newest committed groups peek serves from memory instead of reading them back (0: none). */
  memoryBytes?: number;
}

export interface QueuedRecord {
  payload: Buffer;
  segment: number;
  /** Offset just past this record in its segment. */
  end: number;
}

/** A committed group's bytes, held while it is among the newest memoryBytes and not yet all acknowledged. */
interface ResidentGroup {
  data: Buffer;
  /** Where `data` starts in its segment. */
  start: number;
  /** Its records not yet acknowledged. */
  unacknowledged: number;
  evicted: boolean;
}

/**
 * Where a record not yet acknowledged lies: its frame starts at `start` in its segment; its tag is the
 * group it was committed in, while that is in memory (none for records recovered at open).
 */
type RecordPosition = RingEntry<ResidentGroup>;

interface Cursor {
  segment: number;
  offset: number;
}

export interface OpenReport {
  recovered: number;
  tornBytes: number;
  corruptSegments: number;
}

/** A segment's read handle, opened once and kept while the segment holds records to read. */
interface SegmentReader {
  handle: Promise<FileHandle>;
  reads: number;
  /** The segment is gone: close the handle once the reads under way are done. */
  retired: boolean;
}

/**
 * The appends that will share the next write, and the one promise they all get: settling a
 * promise per append was a measurable part of the gateway's CPU a message.
 */
interface PendingGroup {
  payloads: Array<Buffer | string>;
  /** Each payload's length in bytes (UTF-8 for a string). */
  lengths: number[];
  /** Frames' bytes in all. */
  bytes: number;
  durable: Promise<void>;
  resolve: () => void;
  reject: (error: unknown) => void;
}

function newGroup(): PendingGroup {
  let resolve: () => void = () => undefined;
  let reject: (error: unknown) => void = () => undefined;
  const durable = new Promise<void>((resolved, rejected) => {
    resolve = resolved;
    reject = rejected;
  });
  return { payloads: [], lengths: [], bytes: 0, durable, resolve, reject };
}

function segmentName(segment: number): string {
  return `${String(segment).padStart(20, "0")}${SEGMENT_SUFFIX}`;
}

/** Frames a payload of `length` bytes at `at` in `into`; answers where the frame ends. */
function writeFrame(into: Buffer, at: number, payload: Buffer | string, length: number): number {
  const start = at + HEADER_BYTES;
  if (typeof payload === "string") into.write(payload, start);
  else writeBytes(into, start, payload);
  into.writeUInt32BE(length, at);
  into.writeUInt32BE(crc32(into.subarray(start, start + length)), at + 4);
  return start + length;
}

export function frameRecord(payload: Buffer): Buffer {
  const frame = Buffer.allocUnsafe(HEADER_BYTES + payload.length);
  writeFrame(frame, 0, payload, payload.length);
  return frame;
}

interface ScanResult {
  records: Array<{ start: number; length: number }>;
  validBytes: number;
  corrupt: boolean;
}

function scanSegment(bytes: Buffer, from: number): ScanResult {
  const records: ScanResult["records"] = [];
  let offset = from;
  while (offset + HEADER_BYTES <= bytes.length) {
    const length = bytes.readUInt32BE(offset);
    const end = offset + HEADER_BYTES + length;
    if (length > MAX_RECORD_BYTES) return { records, validBytes: offset, corrupt: true };
    if (end > bytes.length) break;
    const payload = bytes.subarray(offset + HEADER_BYTES, end);
    if (crc32(payload) !== bytes.readUInt32BE(offset + 4)) return { records, validBytes: offset, corrupt: true };
    records.push({ start: offset, length });
    offset = end;
  }
  return { records, validBytes: offset, corrupt: false };
}

function notFound(error: unknown): undefined {
  if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
  throw error;
}

function encodeCursorSlot(generation: number, segment: number, offset: number): Buffer {
  const slot = Buffer.allocUnsafe(CURSOR_SLOT_BYTES);
  slot.writeDoubleBE(generation, 4);
  slot.writeDoubleBE(segment, 12);
  slot.writeDoubleBE(offset, 20);
  slot.writeUInt32BE(crc32(slot.subarray(4)), 0);
  return slot;
}

/** A slot's cursor, or undefined for a slot never written or torn. */
function decodeCursorSlot(slot: Buffer): (Cursor & { generation: number }) | undefined {
  if (crc32(slot.subarray(4)) !== slot.readUInt32BE(0)) return undefined;
  const generation = slot.readDoubleBE(4);
  const segment = slot.readDoubleBE(12);
  const offset = slot.readDoubleBE(20);
  const valid = [generation, segment, offset].every((n) => Number.isSafeInteger(n) && n >= 0);
  return valid && generation > 0 ? { generation, segment, offset } : undefined;
}

function isResident(position: RecordPosition | undefined): boolean {
  return position?.tag !== undefined && !position.tag.evicted;
}

function residentRecord(position: RecordPosition, group: ResidentGroup): QueuedRecord {
  const start = position.start - group.start + HEADER_BYTES;
  return {
    payload: group.data.subarray(start, start + position.length),
    segment: position.segment,
    end: position.start + HEADER_BYTES + position.length,
  };
}

function closeReader(reader: SegmentReader): void {
  // A reader that failed to open has nothing to close; its read already reported the error.
  reader.handle.then((handle) => handle.close()).catch(() => undefined);
}

export class DiskQueue {
  private readonly records = new RecordRing<ResidentGroup>();
  private readonly segmentSizes = new Map<number, number>();
  /** The sum of segmentSizes, kept as they change: every append checks the limit against it. */
  private segmentBytesTotal = 0;
  private readonly readers = new Map<number, SegmentReader>();
  /** Groups in memory, oldest first, and the bytes they hold. */
  private readonly resident: ResidentGroup[] = [];
  private residentBytes = 0;
  private pending: PendingGroup | undefined;
  private committing: Promise<void> | undefined;
  private handle: FileHandle | undefined;
  private segment = 0;
  private closed = false;
  /** The newest cursor not yet being written, and the write under way. */
  private cursorTarget: Cursor | undefined;
  private cursorWriting: Promise<void> | undefined;
  private cursorHandle: FileHandle | undefined;
  /** The generation of the cursor slot written last (the higher one is read back). */
  private cursorGeneration = 0;
  private legacyCursor = false;

  private constructor(private readonly options: Required<DiskQueueOptions>) {}

  /** Opens (creating if needed) the queue in `dir`, recovering every record not yet acknowledged. */
  static async open(options: DiskQueueOptions): Promise<{ queue: DiskQueue; report: OpenReport }> {
    // Space comes back only when a whole segment is acknowledged and deleted: a segment must be a
    // small part of the limit, or a queue emptied by the forwarder could still count as full.
    const segmentBytes =
      options.segmentBytes ?? Math.min(8 * 1024 * 1024, Math.max(64 * 1024, Math.floor(options.maxBytes / 8)));
    const queue = new DiskQueue({ memoryBytes: DEFAULT_MEMORY_BYTES, ...options, segmentBytes });
    const report = await queue.recover();
    return { queue, report };
  }

  /** Records durable and not yet acknowledged. */
  get length(): number {
    return this.records.length;
  }

  /** Bytes of segment files on disk, acknowledged or not, until their segment is deleted. */
  get bytes(): number {
    return this.segmentBytesTotal + (this.pending?.bytes ?? 0);
  }

  /**
   * Resolves once the payload (a string is stored as UTF-8) is on disk (a synchronous write); rejects
   * with QueueFullError when over maxBytes. It is copied into the group's one buffer only when that is written.
   * Appends made while the same write is pending get the same promise.
   */
  append(payload: Buffer | string): Promise<void> {
    if (this.closed) return Promise.reject(new Error("queue is closed"));
    const length = typeof payload === "string" ? Buffer.byteLength(payload) : payload.length;
    if (length > MAX_RECORD_BYTES) return Promise.reject(new Error("record too large"));
    const frameBytes = HEADER_BYTES + length;
    if (this.bytes + frameBytes > this.options.maxBytes) {
      return Promise.reject(
        new QueueFullError(`uplink queue holds ${this.bytes} bytes, limit ${this.options.maxBytes}`),
      );
    }
    this.pending ??= newGroup();
    const group = this.pending;
    group.payloads.push(payload);
    group.lengths.push(length);
    group.bytes += frameBytes;
    // The loop takes the group at once when no write is under way.
    if (!this.committing) this.committing = this.commitLoop();
    return group.durable;
  }

  /**
   * Up to `count` of the oldest records not yet acknowledged, after the first `skip` of them, in
   * append order, read back from their segments. Which records is decided when called, before any wait.
   */
  async peek(count: number, skip = 0): Promise<QueuedRecord[]> {
    const positions = this.records.slice(skip, skip + count);
    const records: QueuedRecord[] = [];
    let first = 0;
    while (first < positions.length) {
      const position = positions[first] as RecordPosition;
      if (position.tag && !position.tag.evicted) {
        records.push(residentRecord(position, position.tag));
        first++;
        continue;
      }
      let last = first;
      while (positions[last + 1]?.segment === position.segment && !isResident(positions[last + 1])) last++;
      records.push(...(await this.read(positions.slice(first, last + 1))));
      first = last + 1;
    }
    return records;
  }

  /** Forgets the `count` oldest records: persists the cursor past them and deletes segments fully consumed. */
  async ack(count: number): Promise<void> {
    if (count <= 0) return;
    const last = this.records.at(Math.min(count, this.records.length) - 1);
    if (!last) return;
    this.records.shift(count, this.forgetOne);
    const next = this.records.at(0);
    const cursor = next
      ? { segment: next.segment, offset: next.start }
      : { segment: last.segment, offset: last.start + HEADER_BYTES + last.length };
    this.cursorTarget = cursor;
    await this.persistCursor();
    for (const segment of [...this.segmentSizes.keys()]) {
      if (segment < cursor.segment && segment !== this.segment) {
        this.setSegmentSize(segment, undefined);
        this.retireReader(segment);
        await rm(join(this.options.dir, segmentName(segment)), { force: true });
      }
    }
  }

  /** Waits for appends already made to become durable, then closes the current segment. */
  async close(): Promise<void> {
    this.closed = true;
    while (this.committing) await this.committing;
    await this.cursorWriting;
    for (const segment of [...this.readers.keys()]) this.retireReader(segment);
    await this.handle?.close();
    this.handle = undefined;
    await this.cursorHandle?.close();
    this.cursorHandle = undefined;
    for (const group of [...this.resident]) this.release(group);
  }

  private async recover(): Promise<OpenReport> {
    const { dir } = this.options;
    await mkdir(dir, { recursive: true });
    const cursor = await this.readCursor();
    const segments = (await readdir(dir))
      .filter((name) => name.endsWith(SEGMENT_SUFFIX))
      .map((name) => Number.parseInt(name, 10))
      .filter((n) => Number.isSafeInteger(n))
      .sort((a, b) => a - b);
    const report: OpenReport = { recovered: 0, tornBytes: 0, corruptSegments: 0 };
    for (const segment of segments) {
      const path = join(dir, segmentName(segment));
      if (segment < cursor.segment) {
        await rm(path, { force: true });
        continue;
      }
      const bytes = await readFile(path);
      this.setSegmentSize(segment, bytes.length);
      const from = segment === cursor.segment ? Math.min(cursor.offset, bytes.length) : 0;
      const scan = scanSegment(bytes, from);
      if (scan.corrupt) report.corruptSegments++;
      else report.tornBytes += bytes.length - scan.validBytes;
      for (const record of scan.records) this.records.push(segment, record.start, record.length);
      report.recovered += scan.records.length;
    }
    // Appends always go to a fresh segment, so a torn tail is never followed by good records.
    this.segment = Math.max(cursor.segment, segments[segments.length - 1] ?? 0) + 1;
    await this.openSegment();
    return report;
  }

  private async openSegment(): Promise<void> {
    await this.handle?.close();
    // O_DSYNC: each write returns once its data is on disk, one round trip to the thread pool
    // instead of a write and an fdatasync.
    const { O_APPEND, O_CREAT, O_DSYNC, O_WRONLY } = constants;
    this.handle = await open(
      join(this.options.dir, segmentName(this.segment)),
      O_WRONLY | O_APPEND | O_CREAT | O_DSYNC,
    );
    this.setSegmentSize(this.segment, 0);
    // The new file's directory entry must survive a crash too.
    await this.syncDirectory();
  }

  private async syncDirectory(): Promise<void> {
    const dirHandle = await open(this.options.dir, "r");
    try {
      await dirHandle.sync();
    } finally {
      await dirHandle.close();
    }
  }

  private async commitLoop(): Promise<void> {
    try {
      for (let group = this.pending; group; group = this.pending) {
        this.pending = undefined;
        try {
          await this.commit(group);
          group.resolve();
        } catch (error) {
          group.reject(error);
        }
      }
    } finally {
      this.committing = undefined;
    }
  }

  private async commit(group: PendingGroup): Promise<void> {
    if ((this.segmentSizes.get(this.segment) ?? 0) >= this.options.segmentBytes) {
      this.segment++;
      await this.openSegment();
    }
    const handle = this.handle;
    if (!handle) throw new Error("queue is not open");
    // Its own memory, not a slice of Node's shared pool: peek may keep it (keep), and it must count as what it holds.
    const data = Buffer.allocUnsafeSlow(group.bytes);
    const { payloads, lengths } = group;
    let at = 0;
    for (let i = 0; i < payloads.length; i++)
      at = writeFrame(data, at, payloads[i] as Buffer | string, lengths[i] ?? 0);
    await handle.write(data, 0, data.length);
    let end = this.segmentSizes.get(this.segment) ?? 0;
    const resident = this.keep(data, end, lengths.length);
    for (const length of lengths) {
      this.records.push(this.segment, end, length, resident);
      end += HEADER_BYTES + length;
    }
    this.setSegmentSize(this.segment, end);
  }

  /** Records a segment's size on disk (undefined: deleted). */
  private setSegmentSize(segment: number, size: number | undefined): void {
    this.segmentBytesTotal += (size ?? 0) - (this.segmentSizes.get(segment) ?? 0);
    if (size === undefined) this.segmentSizes.delete(segment);
    else this.segmentSizes.set(segment, size);
  }

  /** Keeps a committed group's bytes for peek, evicting the oldest groups beyond memoryBytes. */
  private keep(data: Buffer, start: number, records: number): ResidentGroup | undefined {
    const bytes = data.length;
    if (bytes > this.options.memoryBytes) return undefined;
    const group: ResidentGroup = { data, start, unacknowledged: records, evicted: false };
    this.resident.push(group);
    this.residentBytes += bytes;
    while (this.residentBytes > this.options.memoryBytes) this.release(this.resident[0] as ResidentGroup);
    return group;
  }

  /** A record of this group was acknowledged: the group leaves memory with its last. */
  private readonly forgetOne = (group: ResidentGroup): void => {
    if (--group.unacknowledged === 0) this.release(group);
  };

  /** Drops a group from memory: its records not yet acknowledged are read back from their segment. */
  private release(group: ResidentGroup): void {
    if (group.evicted) return;
    group.evicted = true;
    const index = this.resident.indexOf(group);
    if (index >= 0) this.resident.splice(index, 1);
    this.residentBytes -= group.data.length;
  }

  /** Reads consecutive records of one segment with a single read. */
  private async read(positions: RecordPosition[]): Promise<QueuedRecord[]> {
    const first = positions[0];
    const last = positions[positions.length - 1];
    if (!first || !last) return [];
    const from = first.start;
    const bytes = Buffer.allocUnsafe(last.start + HEADER_BYTES + last.length - from);
    // One handle per segment for all its reads: opening and closing the file for every batch the
    // forwarder sends was a twentieth of the gateway's CPU.
    let reader = this.readers.get(first.segment);
    if (!reader) {
      const opened: SegmentReader = {
        handle: open(join(this.options.dir, segmentName(first.segment)), "r"),
        reads: 0,
        retired: false,
      };
      // A failed open is not kept: the next read tries again.
      opened.handle.catch(() => {
        if (this.readers.get(first.segment) === opened) this.readers.delete(first.segment);
      });
      this.readers.set(first.segment, opened);
      reader = opened;
    }
    reader.reads++;
    try {
      const { bytesRead } = await (await reader.handle).read(bytes, 0, bytes.length, from);
      if (bytesRead !== bytes.length) throw new Error(`segment ${first.segment} is shorter than its records`);
    } finally {
      reader.reads--;
      if (reader.retired && reader.reads === 0) closeReader(reader);
    }
    return positions.map((position) => {
      const start = position.start - from + HEADER_BYTES;
      return {
        payload: bytes.subarray(start, start + position.length),
        segment: position.segment,
        end: position.start + HEADER_BYTES + position.length,
      };
    });
  }

  /** The segment was deleted: its reader goes, once no read is using it. */
  private retireReader(segment: number): void {
    const reader = this.readers.get(segment);
    if (!reader) return;
    this.readers.delete(segment);
    reader.retired = true;
    if (reader.reads === 0) closeReader(reader);
  }

  /**
   * Writes the newest cursor, one write at a time: acks that arrive during a write are covered by the
   * next, which writes only the newest of their cursors.
   */
  private persistCursor(): Promise<void> {
    this.cursorWriting ??= (async () => {
      try {
        for (let target = this.cursorTarget; target; target = this.cursorTarget) {
          this.cursorTarget = undefined;
          await this.writeCursor(target.segment, target.offset);
        }
      } finally {
        this.cursorWriting = undefined;
      }
    })();
    return this.cursorWriting;
  }

  /** Without a readable cursor everything on disk is resent: the cloud deduplicates, nothing is lost. */
  private async readCursor(): Promise<Cursor> {
    const slots = await readFile(join(this.options.dir, CURSOR_SLOTS_FILE)).catch(notFound);
    let newest: (Cursor & { generation: number }) | undefined;
    for (let at = 0; slots && at + CURSOR_SLOT_BYTES <= slots.length; at += CURSOR_SLOT_STRIDE) {
      const slot = decodeCursorSlot(slots.subarray(at, at + CURSOR_SLOT_BYTES));
      if (slot && (!newest || slot.generation > newest.generation)) newest = slot;
    }
    if (newest) {
      this.cursorGeneration = newest.generation;
      return { segment: newest.segment, offset: newest.offset };
    }
    const legacy = await readFile(join(this.options.dir, LEGACY_CURSOR_FILE), "utf8").catch(notFound);
    if (legacy === undefined) return { segment: 0, offset: 0 };
    this.legacyCursor = true;
    try {
      const parsed = JSON.parse(legacy) as { segment?: unknown; offset?: unknown };
      if (Number.isSafeInteger(parsed.segment) && Number.isSafeInteger(parsed.offset)) {
        return { segment: parsed.segment as number, offset: parsed.offset as number };
      }
    } catch {
      // fall through to the start of the oldest segment
    }
    return { segment: 0, offset: 0 };
  }

  private async writeCursor(segment: number, offset: number): Promise<void> {
    if (!this.cursorHandle) {
      const { O_CREAT, O_DSYNC, O_RDWR } = constants;
      this.cursorHandle = await open(join(this.options.dir, CURSOR_SLOTS_FILE), O_RDWR | O_CREAT | O_DSYNC);
      await this.syncDirectory();
    }
    const generation = ++this.cursorGeneration;
    const slot = encodeCursorSlot(generation, segment, offset);
    await this.cursorHandle.write(slot, 0, slot.length, (generation % 2) * CURSOR_SLOT_STRIDE);
    if (this.legacyCursor) {
      // Superseded by the slots; a leftover would only be read if both slots were unreadable.
      await rm(join(this.options.dir, LEGACY_CURSOR_FILE), { force: true });
      this.legacyCursor = false;
    }
  }
}
