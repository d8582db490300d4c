// The device directory (FerretDB's list index) answers every search exactly as the MongoDB query it
// stands for: the same query, run by FerretDB over the device documents, is the reference. It is
// built for an organization that has devices but no directory yet, it follows every write, and a
// stale entry never puts a wrong device on a page.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { secretHash } from "../src/auth/secrets.ts";
import { DeviceDirectory } from "../src/devices/device-directory.ts";
import { type DeviceSearch, searchFilter, searchSort } from "../src/devices/device-query.ts";
import { type DeviceDoc, DeviceStore, deviceDocId, NEVER_SEEN } from "../src/devices/device-store.ts";
import { startTestCloud, type TestCloud } from "./helpers.ts";

const NOW = Date.UTC(2026, 10, 29, 12, 0, 0);
const NAMES = ["Boiler", "boiler room", "Chiller", "pump", "Pumpe Süd", "valve", "öfen"];
const FIRMWARE = ["1.0.0", "1.1.0", "2.0.0"];

/** A small, seeded generator: the same fleet and searches every run. */
function random(seed: number): () => number {
  let state = seed;
  return () => {
    state = (Math.imul(state, 1_103_515_245) + 12_345) >>> 0;
    return state / 2 ** 32;
  };
}

describe("device directory", () => {
  let cloud: TestCloud;
  let store: DeviceStore;
  const tenantId = "fleet";

  before(async () => {
    cloud = await startTestCloud();
    store = new DeviceStore(cloud.db);
    const next = random(7);
    const pick = <T>(values: T[]) => values[Math.floor(next() * values.length)] as T;
    await store.createMany(
      tenantId,
      Array.from({ length: 150 }, (_, i) => ({
        deviceId: `${pick(["dev", "Dev", "sensor"])}-${String(i).padStart(3, "0")}`,
        changes: {
          name: `${pick(NAMES)} ${i % 13}`,
          tags: [`line-${i % 5}`, pick(["zone-a", "zone-b", "pump"])],
          groups: [`site-${i % 3}`],
        },
        state: {
          online: next() < 0.6,
          ...(next() < 0.9 && { fw: pick(FIRMWARE) }),
          lastSeen: next() < 0.1 ? NEVER_SEEN : new Date(NOW - Math.floor(next() * 100) * 60_000),
        },
      })),
      secretHash("t"),
    );
    // Another organization's devices, never in this one's answers.
    await store.createMany("other", [{ deviceId: "dev-000", changes: {} }], secretHash("t"));
  });
  after(() => cloud?.close());

  /** What MongoDB's query answers (here evaluated by FerretDB over the device documents). */
  async function reference(search: DeviceSearch): Promise<string[]> {
    const docs = await cloud.db
      .collection<DeviceDoc>("devices")
      .find(searchFilter(tenantId, search))
      .sort(searchSort(search))
      .limit(search.limit)
      .toArray();
    return docs.map((doc) => doc.deviceId);
  }

  /** Every page of the search through the store (the directory), as ids, and the reference for each. */
  async function walk(search: DeviceSearch): Promise<void> {
    let after: DeviceSearch["after"];
    const seen = new Set<string>();
    for (let pageNo = 0; pageNo < 100; pageNo++) {
      const page = { ...search, ...(after && { after }) };
      const { items, endedAt } = await store.search(tenantId, page);
      const ids = items.map((doc) => doc.deviceId);
      assert.deepEqual(ids, await reference(page), `page ${pageNo} of ${JSON.stringify(search)}`);
      for (const id of ids) {
        assert.ok(!seen.has(id), `${id} listed twice`);
        seen.add(id);
      }
      if (!endedAt) return;
      const value =
        search.sort === "id" ? endedAt.deviceId : search.sort === "name" ? endedAt.nameKey : endedAt.lastSeen;
      after = { value, deviceId: endedAt.deviceId };
    }
    assert.fail("too many pages");
  }

  test("every search, sort, order and page answers what the MongoDB query answers", async () => {
    assert.ok(await cloud.db.collection("device_directory").findOne({ _id: `${tenantId}|0` } as never), "in use");
    const next = random(11);
    const pick = <T>(values: T[]) => values[Math.floor(next() * values.length)] as T;
    const searches: DeviceSearch[] = [{ sort: "id", order: "asc", limit: 25 }];
    for (let i = 0; i < 30; i++) {
      searches.push({
        sort: pick(["id", "name", "lastSeen"] as const),
        order: pick(["asc", "desc"] as const),
        limit: pick([12, 50, 200]),
        ...(next() < 0.4 && { q: pick(["dev", "sens", "boiler", "pump", "line-3", "öf", "zone", "x"]) }),
        ...(next() < 0.3 && { online: next() < 0.5 }),
        ...(next() < 0.3 && { fw: pick(FIRMWARE) }),
        ...(next() < 0.2 && { tag: pick(["line-1", "pump", "zone-b"]) }),
        ...(next() < 0.2 && { group: pick(["site-0", "site-2"]) }),
        ...(next() < 0.2 && { lastSeenBefore: NOW - Math.floor(next() * 100) * 60_000 }),
        ...(next() < 0.2 && { lastSeenAfter: NOW - Math.floor(next() * 100) * 60_000 }),
      });
    }
    for (const search of searches) await walk(search);
  });

  test("writes follow: create, relabel, state, telemetry and delete show in the next list", async () => {
    const list = async (search: Omit<DeviceSearch, "sort" | "order" | "limit">) =>
      (await store.search(tenantId, { sort: "id", order: "asc", limit: 200, ...search })).items.map(
        (doc) => doc.deviceId,
      );
    await store.create(tenantId, "zz-new", { name: "Fresh", tags: ["brand-new"] }, secretHash("t"));
    assert.deepEqual(await list({ tag: "brand-new" }), ["zz-new"]);
    await store.update(tenantId, "zz-new", { tags: ["renamed"] });
    assert.deepEqual(await list({ tag: "brand-new" }), []);
    assert.deepEqual(await list({ tag: "renamed" }), ["zz-new"]);
    await store.recordStates(tenantId, [
      { deviceId: "zz-new", receivedAt: NOW, state: { v: 1, online: true, fw: "9.9.9" } },
    ]);
    assert.deepEqual(await list({ fw: "9.9.9", online: true }), ["zz-new"]);
    await store.recordTelemetry([{ tenantId, deviceId: "zz-new", seenAt: new Date(NOW + 60_000) }]);
    assert.deepEqual(await list({ lastSeenAfter: NOW + 30_000 }), ["zz-new"]);
    await store.remove(tenantId, "zz-new");
    assert.deepEqual(await list({ q: "zz" }), []);
  });

  test("an organization with devices but no directory gets one at its first list", async () => {
    const devices = cloud.db.collection<DeviceDoc>("devices");
    // As written before the directory existed: documents only.
    await devices.insertMany(
      ["old-1", "old-2"].map((deviceId) => ({
        _id: deviceDocId("legacy", deviceId),
        tenantId: "legacy",
        deviceId,
        idKey: deviceId,
        name: deviceId,
        nameKey: deviceId,
        tags: [],
        groups: [],
        metadata: {},
        tokenHash: secretHash("t"),
        createdAt: new Date(),
        online: false,
        lastSeen: NEVER_SEEN,
      })),
    );
    const { items } = await store.search("legacy", { sort: "id", order: "asc", limit: 10 });
    assert.deepEqual(
      items.map((doc) => doc.deviceId),
      ["old-1", "old-2"],
    );
  });

  test("a stale entry (a change lost by another writer) never lists a wrong device; a rebuild heals it", async () => {
    const devices = cloud.db.collection<DeviceDoc>("devices");
    const target = "dev-stale";
    await store.create(tenantId, target, { name: "Stale" }, secretHash("t"));
    await store.recordStates(tenantId, [{ deviceId: target, receivedAt: NOW, state: { v: 1, online: true } }]);
    // Another process turned it offline and its directory write was lost: only the document knows.
    await devices.updateOne({ _id: deviceDocId(tenantId, target) }, { $set: { online: false } });
    const online = await store.search(tenantId, { sort: "id", order: "asc", limit: 200, online: true, q: "dev-stale" });
    assert.deepEqual(online.items, [], "the document says offline: not listed as online");
    await new DeviceDirectory(cloud.db).rebuild(tenantId);
    const offline = await store.search(tenantId, {
      sort: "id",
      order: "asc",
      limit: 200,
      online: false,
      q: "dev-stale",
    });
    assert.deepEqual(
      offline.items.map((doc) => doc.deviceId),
      [target],
    );
  });
});
