// The device list's search as MongoDB filter and sort: prefix search over the
// normalised id, name and tags, equality and range filters, and keyset
// pagination (the cursor is the sort key and id of the last device listed, so
// a page costs the same wherever it is, unlike skip).

import type { Filter, Sort } from "mongodb";
import { Problem } from "../http/problem.ts";
import type { DeviceDoc } from "./device-store.ts";
import type { DeviceSort } from "./device-view.ts";

export interface DeviceSearch {
  /** Already normalised with searchKey. */
  q?: string;
  online?: boolean;
  fw?: string;
  /** Lower-case. */
  tag?: string;
  group?: string;
  lastSeenBefore?: number;
  lastSeenAfter?: number;
  sort: DeviceSort;
  order: "asc" | "desc";
  limit: number;
  after?: Cursor;
}

/** Where the page before ended: its last device's sort value and id. */
export interface Cursor {
  value: string | number;
  deviceId: string;
}

const SORT_FIELDS = { id: "deviceId", name: "nameKey", lastSeen: "lastSeen" } as const;

/**
 * An anchored, case-sensitive regex over the lower-cased field: MongoDB turns it into index
 * bounds. Not a $gte/$lt range: on the tags array that needs $elemMatch, which FerretDB v1
 * evaluates like a plain range (one tag could satisfy each bound).
 */
function prefix(p: string): { $regex: string } {
  return { $regex: `^${p.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}` };
}

/** The sort position a cursor records: the last listed device's. */
export interface SortPosition {
  deviceId: string;
  nameKey: string;
  /** Epoch ms. */
  lastSeen: number;
}

export function encodeCursor(search: Pick<DeviceSearch, "sort" | "order">, last: SortPosition): string {
  const value = search.sort === "id" ? last.deviceId : search.sort === "name" ? last.nameKey : last.lastSeen;
  return Buffer.from(JSON.stringify([search.sort, search.order, value, last.deviceId])).toString("base64url");
}

/** The cursor, checked to belong to this sort and order. */
export function decodeCursor(text: string, search: Pick<DeviceSearch, "sort" | "order">): Cursor {
  const invalid = new Problem(400, "invalid_cursor", "cursor is not one this listing returned");
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(text, "base64url").toString("utf8"));
  } catch {
    throw invalid;
  }
  if (!Array.isArray(parsed) || parsed.length !== 4) throw invalid;
  const [sort, order, value, deviceId] = parsed as unknown[];
  if (sort !== search.sort || order !== search.order || typeof deviceId !== "string") throw invalid;
  const valueType = search.sort === "lastSeen" ? "number" : "string";
  if (typeof value !== valueType) throw invalid;
  return { value: value as string | number, deviceId };
}

export function searchSort(search: DeviceSearch): Sort {
  const direction = search.order === "asc" ? 1 : -1;
  const field = SORT_FIELDS[search.sort];
  return field === "deviceId" ? { deviceId: direction } : { [field]: direction, deviceId: direction };
}

export function searchFilter(tenantId: string, search: DeviceSearch): Filter<DeviceDoc> {
  const filter: Filter<DeviceDoc> = { tenantId };
  const and: Filter<DeviceDoc>[] = [];
  if (search.online !== undefined) filter.online = search.online;
  if (search.fw !== undefined) filter.fw = search.fw;
  if (search.tag !== undefined) filter.tags = search.tag;
  if (search.group !== undefined) filter.groups = search.group;
  if (search.lastSeenBefore !== undefined || search.lastSeenAfter !== undefined) {
    filter.lastSeen = {
      ...(search.lastSeenBefore !== undefined && { $lt: new Date(search.lastSeenBefore) }),
      ...(search.lastSeenAfter !== undefined && { $gt: new Date(search.lastSeenAfter) }),
    };
  }
  if (search.q !== undefined) {
    const range = prefix(search.q);
    and.push({ $or: [{ idKey: range }, { nameKey: range }, { tags: range }] });
  }
  if (search.after) and.push(afterCursor(search, search.after));
  if (and.length > 0) filter.$and = and;
  return filter;
}

function afterCursor(search: DeviceSearch, cursor: Cursor): Filter<DeviceDoc> {
  const beyond = search.order === "asc" ? "$gt" : "$lt";
  if (search.sort === "id") return { deviceId: { [beyond]: cursor.deviceId } };
  const field = SORT_FIELDS[search.sort];
  const value = search.sort === "lastSeen" ? new Date(cursor.value) : cursor.value;
  return { $or: [{ [field]: { [beyond]: value } }, { [field]: value, deviceId: { [beyond]: cursor.deviceId } }] };
}
