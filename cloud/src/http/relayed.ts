// What a gateway relays from its devices in batches (command acks, artifact status reports): the
// request and answer schemas, and applying each item on its own, so one bad item is reported in
// `rejected` without refusing the rest.

import { isDeviceId, LIMITS, type Parsed } from "@kestrel/wire";

/** Up to 500 items, each a small object checked by the wire validator: more than the API's default 64 KiB. */
export const RELAYED_BODY_LIMIT = 1024 * 1024;

export interface RelayedItem {
  deviceId: string;
  receivedAt: number;
}

export interface RelayResult {
  applied: number;
  ignored: number;
  rejected: Array<{ index: number; code: string; message: string }>;
}

/** `{ <list>: [ { deviceId, receivedAt, <item>: {...} } ] }`, the item's own shape left to the wire validator. */
export function relayedItemsSchema(list: string, item: string, maxItems: number, example: Record<string, unknown>) {
  return {
    type: "object",
    additionalProperties: false,
    required: [list],
    properties: {
      [list]: {
        type: "array",
        maxItems,
        items: {
          type: "object",
          additionalProperties: false,
          required: ["deviceId", "receivedAt", item],
          properties: {
            deviceId: { type: "string", minLength: 1, maxLength: LIMITS.deviceIdLength },
            receivedAt: { type: "integer", minimum: 0, maximum: 8_640_000_000_000_000 },
            // Checked per item by the wire contract's validator.
            [item]: { type: "object" },
          },
        },
      },
    },
    examples: [{ [list]: [{ deviceId: "sim-001", receivedAt: 1_767_225_600_000, [item]: example }] }],
  } as const;
}

export function relayResultSchema(description: string) {
  return {
    description,
    type: "object",
    additionalProperties: false,
    required: ["applied", "ignored", "rejected"],
    properties: {
      applied: { type: "integer" },
      ignored: { type: "integer" },
      rejected: {
        type: "array",
        items: {
          type: "object",
          additionalProperties: false,
          required: ["index", "code", "message"],
          properties: { index: { type: "integer" }, code: { type: "string" }, message: { type: "string" } },
        },
      },
    },
  } as const;
}

/**
 * Validates each item and applies the valid ones; `apply` answers false for an item that changes
 * nothing (a repeat, a stale or foreign one), which counts as ignored.
 */
export async function applyRelayed<T, Item extends RelayedItem>(
  items: readonly Item[],
  validate: (item: Item) => Parsed<T>,
  apply: (item: Item, value: T) => Promise<boolean>,
): Promise<RelayResult> {
  const result: RelayResult = { applied: 0, ignored: 0, rejected: [] };
  for (const [index, item] of items.entries()) {
    const parsed = validate(item);
    if (!isDeviceId(item.deviceId))
      result.rejected.push({ index, code: "invalid_device_id", message: "not a valid device id" });
    else if (!parsed.ok) result.rejected.push({ index, ...parsed.error });
    else if (await apply(item, parsed.value)) result.applied++;
    else result.ignored++;
  }
  return result;
}
