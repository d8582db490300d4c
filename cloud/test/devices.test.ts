import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { secretHash } from "../src/auth/secrets.ts";
import { type DeviceDoc, DeviceStore, NEVER_SEEN } from "../src/devices/device-store.ts";
import type { DeviceList, DeviceView } from "../src/devices/device-view.ts";
import type { Credentials } from "../src/tenants/bootstrap.ts";
import { addMember, bearer, bootstrapTenant, ingest, login, startTestCloud, type TestCloud } from "./helpers.ts";

const T0 = Date.UTC(2026, 10, 29, 12, 0, 0);

describe("devices API", () => {
  let cloud: TestCloud;
  let acme: Credentials;
  let globex: Credentials;
  let session: string;

  const api = (method: "GET" | "POST" | "PATCH" | "DELETE", url: string, payload?: object, token = session) =>
    cloud.app.inject({ method, url, headers: bearer(token), ...(payload && { payload }) });
  const deviceAuth = (gatewayKey: string, deviceId: string, token: string) =>
    cloud.app.inject({
      method: "POST",
      url: "/api/gateway/v1/device-auth",
      headers: bearer(gatewayKey),
      payload: { deviceId, token },
    });

  before(async () => {
    cloud = await startTestCloud();
    acme = await bootstrapTenant(cloud.db, "Acme", ["dev-1"]);
    globex = await bootstrapTenant(cloud.db, "Globex", ["gx-secret"]);
    session = await login(cloud.app, acme.admin.email);
  });
  after(() => cloud?.close());

  describe("lifecycle", () => {
    test("create shows the token once; it authenticates until rotated; delete ends the device", async () => {
      const created = await api("POST", "/api/devices", {
        deviceId: "Press-07",
        name: "Press 7",
        tags: ["Line-3", "hydraulic", "line-3"],
        groups: ["Plant-A"],
        metadata: { floor: 5, vendor: "acme", outdoor: false },
      });
      assert.equal(created.statusCode, 201, created.body);
      const { device, token } = created.json<{ device: DeviceView; token: string }>();
      assert.match(token, /^[A-Za-z0-9_-]{43}$/);
      assert.equal(device.deviceId, "Press-07");
      assert.deepEqual(device.tags, ["line-3", "hydraulic"]);
      assert.deepEqual(device.groups, ["plant-a"]);
      assert.deepEqual(device.metadata, { floor: 5, vendor: "acme", outdoor: false });
      assert.equal(device.online, false);
      assert.equal(device.lastSeen, null);
      const stored = await cloud.db.collection<DeviceDoc>("devices").findOne({ deviceId: "Press-07" });
      assert.equal(stored?.tokenHash, secretHash(token), "only the hash is stored");
      assert.equal((await deviceAuth(acme.gatewayKey, "Press-07", token)).statusCode, 200);

      const read = await api("GET", "/api/devices/Press-07");
      assert.equal(read.statusCode, 200);
      assert.equal("token" in read.json(), false);
      assert.deepEqual(read.json(), device);

      const again = await api("POST", "/api/devices", { deviceId: "Press-07" });
      assert.equal(again.statusCode, 409);
      assert.equal(again.json().code, "device_exists");

      const changed = await api("PATCH", "/api/devices/Press-07", {
        name: "Press 7 (rebuilt)",
        metadata: { floor: 4 },
      });
      assert.equal(changed.statusCode, 200, changed.body);
      assert.equal(changed.json().name, "Press 7 (rebuilt)");
      assert.deepEqual(changed.json().metadata, { floor: 4 });
      assert.deepEqual(changed.json().tags, ["line-3", "hydraulic"], "fields not given are kept");

      const rotated = await api("POST", "/api/devices/Press-07/token");
      assert.equal(rotated.statusCode, 200);
      const fresh = rotated.json<{ token: string }>().token;
      assert.notEqual(fresh, token);
      assert.equal((await deviceAuth(acme.gatewayKey, "Press-07", token)).statusCode, 401);
      assert.equal((await deviceAuth(acme.gatewayKey, "Press-07", fresh)).statusCode, 200);

      assert.equal((await api("DELETE", "/api/devices/Press-07")).statusCode, 204);
      assert.equal((await api("GET", "/api/devices/Press-07")).statusCode, 404);
      assert.equal((await api("DELETE", "/api/devices/Press-07")).statusCode, 404);
      assert.equal((await deviceAuth(acme.gatewayKey, "Press-07", fresh)).statusCode, 401);
      const refused = await ingest(cloud.app, acme.gatewayKey, {
        states: [{ deviceId: "Press-07", receivedAt: T0, state: { v: 1, online: true } }],
      });
      assert.equal(refused.json().rejected[0].code, "unknown_device");
    });

    test("the view shows the state the firmware reports, dropped, mode and plugins included", async () => {
      const state = {
        v: 1,
        online: true,
        fw: "1.4.2",
        boot: 12,
        reset: "watchdog",
        mode: "safe",
        uptime: 3600,
        heap: 21_000,
        rssi: -61,
        dropped: 17,
        plugins: [
          { name: "dewpoint", version: "1.1.0", state: "enabled", previous: "1.0.0", calls: 420, errors: 0, fuel: 212 },
          {
            name: "spin",
            version: "1.0.0",
            state: "failed",
            reason: "budget: [trap] execution budget exhausted",
            calls: 1,
            errors: 1,
            fuel: 50_000,
          },
        ],
      };
      const stored = await ingest(cloud.app, acme.gatewayKey, {
        states: [{ deviceId: "dev-1", receivedAt: T0, state }],
      });
      assert.deepEqual(stored.json().rejected, []);
      const view = (await api("GET", "/api/devices/dev-1")).json<DeviceView>();
      const { v: _, ...reported } = state;
      assert.deepEqual(
        {
          online: view.online,
          fw: view.fw,
          boot: view.boot,
          reset: view.reset,
          mode: view.mode,
          uptime: view.uptime,
          heap: view.heap,
          rssi: view.rssi,
          dropped: view.dropped,
          plugins: view.plugins,
        },
        reported,
      );
      assert.equal(view.lastSeen, T0);
    });

    test("bad input answers 400 and changes nothing", async () => {
      for (const payload of [
        { deviceId: "bad id" },
        { deviceId: "ok-1", name: " padded " },
        { deviceId: "ok-1", name: "" },
        { deviceId: "ok-1", tags: ["has space"] },
        { deviceId: "ok-1", tags: Array.from({ length: 21 }, (_, i) => `t${i}`) },
        { deviceId: "ok-1", metadata: { $where: "1" } },
        { deviceId: "ok-1", metadata: { "a.b": 1 } },
        { deviceId: "ok-1", metadata: { nested: { x: 1 } } },
        { deviceId: "ok-1", metadata: { long: "x".repeat(257) } },
        { deviceId: "ok-1", tokenHash: "mine" },
      ]) {
        const response = await api("POST", "/api/devices", payload);
        assert.equal(response.statusCode, 400, JSON.stringify(payload));
        assert.equal(response.headers["content-type"], "application/problem+json; charset=utf-8");
      }
      assert.equal((await api("PATCH", "/api/devices/dev-1", {})).statusCode, 400);
      assert.equal((await api("GET", "/api/devices/ok-1")).statusCode, 404);
    });

    test("another organization's device answers 404 to every route and is never listed", async () => {
      for (const [method, url, payload] of [
        ["GET", "/api/devices/gx-secret"],
        ["PATCH", "/api/devices/gx-secret", { name: "mine now" }],
        ["POST", "/api/devices/gx-secret/token"],
        ["DELETE", "/api/devices/gx-secret"],
      ] as const) {
        const response = await api(method, url, payload);
        assert.equal(response.statusCode, 404, `${method} ${url}`);
        assert.equal(response.json().code, "device_not_found");
      }
      const listed = (await api("GET", "/api/devices?q=gx&limit=200")).json<DeviceList>();
      assert.deepEqual(listed.items, []);
      const globexSession = await login(cloud.app, globex.admin.email);
      const theirs = await api("GET", "/api/devices/gx-secret", undefined, globexSession);
      assert.equal(theirs.json().name, "gx-secret", "untouched");
      // The same id in two organizations is two devices.
      assert.equal((await api("POST", "/api/devices", { deviceId: "gx-secret" })).statusCode, 201);
      assert.equal((await api("DELETE", "/api/devices/gx-secret")).statusCode, 204);
      assert.equal((await api("GET", "/api/devices/gx-secret", undefined, globexSession)).statusCode, 200);
    });

    test("a viewer reads devices but may not change them", async () => {
      await addMember(cloud.db, acme.tenantId, "viewer@acme.test", "viewer");
      const viewer = await login(cloud.app, "viewer@acme.test");
      assert.equal((await api("GET", "/api/devices/dev-1", undefined, viewer)).statusCode, 200);
      assert.equal((await api("POST", "/api/devices", { deviceId: "v-1" }, viewer)).statusCode, 403);
      assert.equal((await api("PATCH", "/api/devices/dev-1", { name: "x" }, viewer)).statusCode, 403);
      assert.equal((await api("DELETE", "/api/devices/dev-1", undefined, viewer)).statusCode, 403);
    });
  });

  describe("search, filters, sorting and paging", () => {
    const tenant = "search-org";
    let searchSession: string;
    /** The model the answers are checked against. */
    const fleet: Array<{
      deviceId: string;
      name: string;
      tags: string[];
      groups: string[];
      online: boolean;
      fw: string;
      lastSeen: number;
    }> = [];
    const FIRMWARE = ["1.0.0", "1.1.0", "2.0.0"];
    const NAMES = ["Boiler", "boiler", "Chiller", "Élan pump", "Press", "press line"];

    before(async () => {
      const org = await bootstrapTenant(cloud.db, "Search", []);
      searchSession = await login(cloud.app, org.admin.email);
      for (let i = 0; i < 41; i++) {
        fleet.push({
          deviceId: `${i % 3 === 0 ? "Dev" : "dev"}-${String(i).padStart(2, "0")}`,
          name: `${NAMES[i % NAMES.length]}${i % 5 === 0 ? "" : ` ${i % 4}`}`,
          tags: i % 4 === 0 ? [] : [`line-${i % 4}`, ...(i % 7 === 0 ? ["press"] : [])],
          groups: [`plant-${i % 2 === 0 ? "a" : "b"}`],
          online: i % 3 !== 1,
          fw: FIRMWARE[i % 3] as string,
          // Several devices share a time (and several were never seen) so ties need the id to break them.
          lastSeen: i % 6 === 5 ? 0 : T0 + (i % 9) * 60_000,
        });
      }
      await new DeviceStore(cloud.db).createMany(
        org.tenantId,
        fleet.map(({ deviceId, name, tags, groups, online, fw, lastSeen }) => ({
          deviceId,
          changes: { name, tags, groups },
          state: { online, fw, lastSeen: lastSeen === 0 ? NEVER_SEEN : new Date(lastSeen) },
        })),
        secretHash("unused"),
      );
      assert.ok(tenant);
    });

    /** Every page of the query, checking that the cursor walks each device exactly once. */
    const walk = async (query: string, pageSize = 7): Promise<DeviceView[]> => {
      const seen: DeviceView[] = [];
      let cursor: string | null = null;
      for (let pages = 0; pages < 50; pages++) {
        const url: string = `/api/devices?${query}&limit=${pageSize}${cursor ? `&cursor=${cursor}` : ""}`;
        const response = await api("GET", url, undefined, searchSession);
        assert.equal(response.statusCode, 200, response.body);
        const page = response.json<DeviceList>();
        assert.ok(page.items.length <= pageSize);
        seen.push(...page.items);
        cursor = page.nextCursor;
        if (cursor === null) break;
        assert.equal(page.items.length, pageSize, "only the last page is short");
      }
      const ids = seen.map((device) => device.deviceId);
      assert.equal(new Set(ids).size, ids.length, "no device twice");
      return seen;
    };

    const ids = (devices: Array<{ deviceId: string }>) => devices.map((device) => device.deviceId);
    const byId = (a: { deviceId: string }, b: { deviceId: string }) => (a.deviceId < b.deviceId ? -1 : 1);
    const keyed =
      (key: (device: (typeof fleet)[number]) => string | number) =>
      (a: (typeof fleet)[number], b: (typeof fleet)[number]) => {
        const [x, y] = [key(a), key(b)];
        return x < y ? -1 : x > y ? 1 : byId(a, b);
      };

    test("sorting by id, name and lastSeen, both ways, pages through every device exactly once", async () => {
      const orders = {
        id: byId,
        name: keyed((device) => device.name.toLowerCase()),
        lastSeen: keyed((device) => device.lastSeen),
      };
      for (const [sort, compare] of Object.entries(orders)) {
        const ascending = [...fleet].sort(compare);
        assert.deepEqual(ids(await walk(`sort=${sort}&order=asc`)), ids(ascending), `${sort} asc`);
        assert.deepEqual(ids(await walk(`sort=${sort}&order=desc`, 6)), ids(ascending.reverse()), `${sort} desc`);
      }
    });

    test("each filter and their combination answer exactly the matching devices", async () => {
      const cases: Array<[string, (device: (typeof fleet)[number]) => boolean]> = [
        ["online=true", (d) => d.online],
        ["online=false", (d) => !d.online],
        ["fw=2.0.0", (d) => d.fw === "2.0.0"],
        ["tag=LINE-2", (d) => d.tags.includes("line-2")],
        ["group=plant-b", (d) => d.groups.includes("plant-b")],
        [`lastSeenBefore=${T0 + 3 * 60_000}`, (d) => d.lastSeen < T0 + 3 * 60_000],
        [`lastSeenAfter=${T0 + 3 * 60_000}`, (d) => d.lastSeen > T0 + 3 * 60_000],
        [
          `online=true&fw=1.0.0&group=plant-a&lastSeenAfter=${T0}`,
          (d) => d.online && d.fw === "1.0.0" && d.groups.includes("plant-a") && d.lastSeen > T0,
        ],
        ["tag=nothing-has-this", () => false],
      ];
      for (const [query, matches] of cases) {
        const expected = fleet.filter(matches).sort(byId);
        assert.deepEqual(ids(await walk(query)), ids(expected), query);
      }
    });

    test("q is a case-insensitive prefix of the id, the name or a tag", async () => {
      const prefixOf = (text: string, q: string) => text.toLowerCase().startsWith(q);
      for (const q of [
        "DEV-1",
        "dev-0",
        "boiler",
        "BOILER 1",
        "élan",
        "ÉLAN",
        "press",
        "line-3",
        "zzz",
        "b.iler",
        ".*",
        "(",
      ]) {
        const lower = q.toLowerCase();
        const expected = fleet
          .filter(
            (d) => prefixOf(d.deviceId, lower) || prefixOf(d.name, lower) || d.tags.some((t) => t.startsWith(lower)),
          )
          .sort(byId);
        // Regex characters in q are literal.
        assert.ok(["zzz", "b.iler", ".*", "("].includes(q) || expected.length > 0, `fixture covers ${q}`);
        assert.deepEqual(ids(await walk(`q=${encodeURIComponent(q)}`, 5)), ids(expected), q);
      }
      const combined = fleet
        .filter((d) => prefixOf(d.name, "press") || d.tags.includes("press"))
        .filter((d) => d.online)
        .sort(keyed((d) => d.name.toLowerCase()))
        .reverse();
      assert.deepEqual(ids(await walk("q=press&online=true&sort=name&order=desc", 3)), ids(combined));
    });

    test("bad queries answer 400", async () => {
      const first = (await api("GET", "/api/devices?sort=name&limit=2", undefined, searchSession)).json<DeviceList>();
      assert.ok(first.nextCursor);
      for (const query of [
        "limit=0",
        "limit=201",
        "limit=ten",
        "online=yes",
        "sort=fw",
        "order=up",
        "lastSeenBefore=yesterday",
        "q=",
        "q=%20%20",
        `q=${"x".repeat(65)}`,
        "tag=a%20b",
        "unknown=1",
        "cursor=not-a-cursor",
        `cursor=${first.nextCursor}`,
        `sort=name&order=desc&cursor=${first.nextCursor}`,
        `cursor=${Buffer.from('["id","asc",5,"x"]').toString("base64url")}`,
      ]) {
        const response = await api("GET", `/api/devices?${query}`, undefined, searchSession);
        assert.equal(response.statusCode, 400, query);
        assert.equal(response.headers["content-type"], "application/problem+json; charset=utf-8");
      }
    });
  });
});
