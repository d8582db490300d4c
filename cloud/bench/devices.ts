// Benchmark: device search and filters over 100,000 devices of one organization, through the
// HTTP API (schema, access hook, query, serialisation), against a point read of one device by id
// measured in the same run.   npm run bench -w cloud -- devices   (DEVICES=100000 ROUNDS=20 BUDGET_S=30)
// Every answer is checked: non-empty, and each device in it satisfies the query (and its order).
// FERRETDB_BACKEND=postgresql measures the embedded FerretDB on PostgreSQL.
// Uses MONGODB_URI when set, else the embedded FerretDB. Each query runs ROUNDS times, but stops
// after BUDGET_S seconds once it has MIN_ROUNDS: on FerretDB v1 every list query scans the collection.

import { mkdtemp, rm } from "node:fs/promises";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { buildApp } from "../src/app.ts";
import { secretHash } from "../src/auth/secrets.ts";
import { loadConfig } from "../src/config.ts";
import { DeviceStore, NEVER_SEEN } from "../src/devices/device-store.ts";
import type { DeviceList, DeviceView } from "../src/devices/device-view.ts";
import { connectDb } from "../src/storage/connect.ts";
import { startEmbeddedFerretDb } from "../src/storage/embedded-ferretdb.ts";
import { bootstrap } from "../src/tenants/bootstrap.ts";

const DEVICES = Number(process.env.DEVICES || 100_000);
const ROUNDS = Number(process.env.ROUNDS || 20);
const BUDGET_MS = Number(process.env.BUDGET_S || 30) * 1000;
const MIN_ROUNDS = 2;
const CHUNK = 5_000;
const PASSWORD = "bench password, long enough";
const NOW = Date.UTC(2026, 10, 29, 12, 0, 0);
const FIRMWARE = ["1.0.0", "1.1.0", "1.2.0", "2.0.0"];
const WORDS = ["boiler", "chiller", "press", "pump", "valve", "meter", "fan", "oven"];

function device(i: number) {
  const deviceId = `dev-${String(i).padStart(6, "0")}`;
  return {
    deviceId,
    changes: {
      name: `${WORDS[i % WORDS.length]} ${i % 997}`,
      tags: [`line-${i % 50}`, `zone-${i % 7}`],
      groups: [`site-${i % 20}`],
      metadata: { floor: i % 12, vendor: "acme" },
    },
    state: {
      online: i % 4 !== 0,
      fw: FIRMWARE[i % FIRMWARE.length] as string,
      lastSeen: i % 100 === 0 ? NEVER_SEEN : new Date(NOW - (i % 10_000) * 60_000),
      boot: 1 + (i % 9),
      uptime: i % 86_400,
      heap: 20_000 + (i % 4_000),
      rssi: -40 - (i % 50),
    },
  };
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] as number;
}

export async function devicesBenchmark(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), "kestrel-bench-devices-"));
  const config = loadConfig({
    DATA_DIR: dir,
    ...(process.env.FERRETDB_BACKEND && { FERRETDB_BACKEND: process.env.FERRETDB_BACKEND }),
    ...(process.env.MONGODB_URI && { MONGODB_URI: process.env.MONGODB_URI }),
  });
  const ferret = config.mongoUri
    ? undefined
    : await startEmbeddedFerretDb({ dataDir: join(dir, "ferretdb"), backend: config.embeddedBackend });
  const database = await connectDb(config.mongoUri ?? (ferret?.uri as string), `bench_devices_${Date.now()}`);
  const app = await buildApp({ db: database.db, config });
  try {
    const org = await bootstrap(database.db, {
      tenantName: "Bench",
      adminEmail: "admin@bench.test",
      adminPassword: PASSWORD,
      deviceIds: [],
    });
    // A second organization, so every query has to skip devices that are not the caller's.
    const other = await bootstrap(database.db, {
      tenantName: "Other",
      adminEmail: "admin@other.test",
      adminPassword: PASSWORD,
      deviceIds: [],
    });
    const store = new DeviceStore(database.db);
    const tokenHash = secretHash("bench");
    const loadStarted = performance.now();
    for (let start = 0; start < DEVICES; start += CHUNK) {
      const count = Math.min(CHUNK, DEVICES - start);
      await store.createMany(
        org.tenantId,
        Array.from({ length: count }, (_, i) => device(start + i)),
        tokenHash,
      );
    }
    await store.createMany(
      other.tenantId,
      Array.from({ length: 1_000 }, (_, i) => device(i)),
      tokenHash,
    );
    const loadSeconds = (performance.now() - loadStarted) / 1000;

    const login = await app.inject({
      method: "POST",
      url: "/api/auth/login",
      payload: { email: "admin@bench.test", password: PASSWORD },
    });
    const headers = { authorization: `Bearer ${login.json<{ token: string }>().token}` };
    const get = async (url: string) => {
      const response = await app.inject({ method: "GET", url, headers });
      if (response.statusCode !== 200) throw new Error(`${url} answered ${response.statusCode}: ${response.body}`);
      return response.json<DeviceList>();
    };

    const firstPage = await get("/api/devices?sort=name&limit=50");
    const deviceId = (r: number) => `dev-${String((r * 7919) % DEVICES).padStart(6, "0")}`;
    // Each query comes with what its answer must be: a row times a query that returns what it claims.
    type Check = (items: DeviceView[], round: number) => void;
    const every =
      (what: string, holds: (item: DeviceView, round: number) => boolean): Check =>
      (items, round) => {
        const wrong = items.find((item) => !holds(item, round));
        if (wrong) throw new Error(`${wrong.deviceId} does not satisfy ${what}`);
      };
    const ordered =
      (what: string, key: (item: DeviceView) => string | number, direction: 1 | -1): Check =>
      (items) => {
        for (let i = 1; i < items.length; i++) {
          const [a, b] = [key(items[i - 1] as DeviceView), key(items[i] as DeviceView)];
          if ((a < b ? -1 : a > b ? 1 : 0) * direction > 0) throw new Error(`not ordered by ${what}`);
        }
      };
    const idPrefix = (r: number) => deviceId(r).slice(0, 9);
    // Device i has word i % 8, firmware i % 4 (online unless i % 4 = 0) and site i % 20: a name word w,
    // its firmware w % 4 and a site congruent to w mod 4 are all held by the devices i = w mod 8, g mod 20.
    const combined = (r: number) => {
      const w = [1, 2, 3, 5, 6, 7][r % 6] as number;
      return { word: WORDS[w] as string, fw: FIRMWARE[w % 4] as string, group: `site-${(w % 4) + 4 * (r % 5)}` };
    };
    const firstNames = new Set(firstPage.items.map((item) => item.deviceId));
    const queries: Array<[string, (round: number) => string, Check[]]> = [
      [
        "point read by id (baseline)",
        (r) => `/api/devices/${deviceId(r)}`,
        [every("the id asked for", (item, r) => item.deviceId === deviceId(r))],
      ],
      [
        "list, sort=id, first page",
        () => "/api/devices?limit=50",
        [every("the first ids", (item) => item.deviceId < "dev-000050"), ordered("id", (item) => item.deviceId, 1)],
      ],
      [
        "q=<id prefix>",
        (r) => `/api/devices?q=${idPrefix(r)}&limit=50`,
        [every("the id prefix", (item, r) => item.deviceId.startsWith(idPrefix(r)))],
      ],
      [
        "q=<name prefix>",
        (r) => `/api/devices?q=${WORDS[r % WORDS.length]}%201&limit=50`,
        [every("the name prefix", (item, r) => item.name.startsWith(`${WORDS[r % WORDS.length]} 1`))],
      ],
      ["online=false", () => "/api/devices?online=false&limit=50", [every("offline", (item) => !item.online)]],
      [
        "fw=<version>",
        (r) => `/api/devices?fw=${FIRMWARE[r % FIRMWARE.length]}&limit=50`,
        [every("the firmware", (item, r) => item.fw === FIRMWARE[r % FIRMWARE.length])],
      ],
      [
        "tag=<tag>",
        (r) => `/api/devices?tag=line-${r % 50}&limit=50`,
        [every("the tag", (item, r) => item.tags.includes(`line-${r % 50}`))],
      ],
      [
        "lastSeenBefore (stale), sort=lastSeen",
        () => `/api/devices?lastSeenBefore=${NOW - 86_400_000}&sort=lastSeen&limit=50`,
        [
          every("seen before the bound", (item) => (item.lastSeen ?? 0) < NOW - 86_400_000),
          ordered("lastSeen", (item) => item.lastSeen ?? 0, 1),
        ],
      ],
      [
        "sort=lastSeen desc",
        () => "/api/devices?sort=lastSeen&order=desc&limit=50",
        [ordered("lastSeen, descending", (item) => item.lastSeen ?? 0, -1)],
      ],
      [
        "sort=name, next page (cursor)",
        () => `/api/devices?sort=name&limit=50&cursor=${firstPage.nextCursor}`,
        [
          every("after the first page", (item) => !firstNames.has(item.deviceId)),
          ordered("name", (item) => item.name, 1),
        ],
      ],
      [
        "q + online + fw + group",
        (r) => {
          const { word, fw, group } = combined(r);
          return `/api/devices?q=${word}&online=true&fw=${fw}&group=${group}&limit=50`;
        },
        [
          every("all four", (item, r) => {
            const { word, fw, group } = combined(r);
            return item.name.startsWith(word) && item.online && item.fw === fw && item.groups.includes(group);
          }),
        ],
      ],
    ];

    const results: Array<{ name: string; p50: number; p99: number; items: number; rounds: number }> = [];
    for (const [name, url, checks] of queries) {
      const times: number[] = [];
      let items = 0;
      const started = performance.now();
      for (let round = 1; round <= ROUNDS; round++) {
        if (round > MIN_ROUNDS && performance.now() - started > BUDGET_MS) break;
        const before = performance.now();
        const body = await get(url(round));
        times.push(performance.now() - before);
        const answer = "items" in body ? body.items : [body as unknown as DeviceView];
        if (answer.length === 0) throw new Error(`${name}: ${url(round)} answered no device`);
        for (const check of checks) check(answer, round);
        items += answer.length;
      }
      times.sort((a, b) => a - b);
      const rounds = times.length;
      results.push({ name, p50: percentile(times, 50), p99: percentile(times, 99), items: items / rounds, rounds });
    }

    const baseline = results[0]?.p50 ?? 1;
    const load = loadavg()
      .map((value) => value.toFixed(2))
      .join(" ");
    const backend = config.mongoUri ? "MongoDB (MONGODB_URI)" : `embedded FerretDB v1 (${config.embeddedBackend})`;
    process.stdout.write(
      `${DEVICES} devices (+1,000 of another organization) on ${backend}, bulk-loaded in ${loadSeconds.toFixed(1)} s; ` +
        `up to ${ROUNDS} rounds per query (fewer once a query used ${BUDGET_MS / 1000} s); load average ${load}\n\n` +
        "| query | rounds | p50 ms | p99 ms | p50 / point read | items |\n| --- | ---: | ---: | ---: | ---: | ---: |\n",
    );
    for (const { name, p50, p99, items, rounds } of results) {
      const ratio = (p50 / baseline).toFixed(1);
      process.stdout.write(
        `| ${name} | ${rounds} | ${p50.toFixed(1)} | ${p99.toFixed(1)} | ${ratio} | ${items.toFixed(0)} |\n`,
      );
    }
  } finally {
    await app.close();
    await database.close();
    await ferret?.stop();
    await rm(dir, { recursive: true, force: true });
  }
}
