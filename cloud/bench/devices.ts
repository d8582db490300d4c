// Benchmark: device search and filters over 100,000 devices of one organization, through the
// HTTP API (schema, access hook, query, serialisation), against a point read of one device by id
// measured in the same run.   npm run bench -w cloud -- devices   (DEVICES=100000 ROUNDS=20 BUDGET_S=30)
// Uses MONGODB_URI when set, else the embedded FerretDB. Each query runs ROUNDS times, but stops
// after BUDGET_S seconds once it has MIN_ROUNDS: on FerretDB v1 every list query scans the collection.

import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { buildApp } from "../src/app.ts";
import { secretHash } from "../src/auth/secrets.ts";
import { loadConfig } from "../src/config.ts";
import { DeviceStore, NEVER_SEEN } from "../src/devices/device-store.ts";
import type { DeviceList } from "../src/devices/device-view.ts";
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
    const queries: Array<[string, (round: number) => string]> = [
      ["point read by id (baseline)", (r) => `/api/devices/dev-${String((r * 7919) % DEVICES).padStart(6, "0")}`],
      ["list, sort=id, first page", () => "/api/devices?limit=50"],
      ["q=<id prefix>", (r) => `/api/devices?q=dev-0${r % 10}12&limit=50`],
      ["q=<name prefix>", (r) => `/api/devices?q=${WORDS[r % WORDS.length]}%201&limit=50`],
      ["online=false", () => "/api/devices?online=false&limit=50"],
      ["fw=<version>", (r) => `/api/devices?fw=${FIRMWARE[r % FIRMWARE.length]}&limit=50`],
      ["tag=<tag>", (r) => `/api/devices?tag=line-${r % 50}&limit=50`],
      [
        "lastSeenBefore (stale), sort=lastSeen",
        () => `/api/devices?lastSeenBefore=${NOW - 86_400_000}&sort=lastSeen&limit=50`,
      ],
      ["sort=lastSeen desc", () => "/api/devices?sort=lastSeen&order=desc&limit=50"],
      ["sort=name, next page (cursor)", () => `/api/devices?sort=name&limit=50&cursor=${firstPage.nextCursor}`],
      [
        "q + online + fw + group",
        (r) => `/api/devices?q=${WORDS[r % WORDS.length]}&online=true&fw=1.1.0&group=site-${r % 20}&limit=50`,
      ],
    ];

    const results: Array<{ name: string; p50: number; p99: number; items: number; rounds: number }> = [];
    for (const [name, url] of queries) {
      const times: number[] = [];
      let items = 0;
      const started = performance.now();
      for (let round = 1; round <= ROUNDS; round++) {
        if (round > MIN_ROUNDS && performance.now() - started > BUDGET_MS) break;
        const before = performance.now();
        const body = await get(url(round));
        times.push(performance.now() - before);
        items += "items" in body ? body.items.length : 1;
      }
      times.sort((a, b) => a - b);
      const rounds = times.length;
      results.push({ name, p50: percentile(times, 50), p99: percentile(times, 99), items: items / rounds, rounds });
    }

    const baseline = results[0]?.p50 ?? 1;
    const backend = config.mongoUri ? "MongoDB (MONGODB_URI)" : `embedded FerretDB v1 (${config.embeddedBackend})`;
    process.stdout.write(
      `${DEVICES} devices (+1,000 of another organization) on ${backend}, bulk-loaded in ${loadSeconds.toFixed(1)} s; ` +
        `up to ${ROUNDS} rounds per query (fewer once a query used ${BUDGET_MS / 1000} s)\n\n` +
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
