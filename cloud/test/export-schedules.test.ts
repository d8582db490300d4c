import assert from "node:assert/strict";
import { createServer, type IncomingHttpHeaders, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, describe, test } from "node:test";
import type { TelemetrySample } from "@kestrel/wire";
import { pino } from "pino";
import { CSV_HEADER } from "../src/exports/export-format.ts";
import type { RunView, ScheduleView } from "../src/exports/schedule-schema.ts";
import { ExportScheduler } from "../src/exports/scheduler.ts";
import { TelemetryStore } from "../src/telemetry/telemetry-store.ts";
import type { Credentials } from "../src/tenants/bootstrap.ts";
import { parseCsv } from "./csv.ts";
import { addMember, bearer, bootstrapTenant, login, startTestCloud, type TestCloud } from "./helpers.ts";

const MINUTE = 60_000;

interface Delivery {
  path: string;
  headers: IncomingHttpHeaders;
  body: string;
}

/** A local webhook receiver: records every POST; /fail answers 500. */
async function startReceiver(): Promise<{ server: Server; url: string; deliveries: Delivery[] }> {
  const deliveries: Delivery[] = [];
  const server = createServer((request, response) => {
    const parts: Buffer[] = [];
    request.on("data", (part: Buffer) => parts.push(part));
    request.on("end", () => {
      deliveries.push({
        path: request.url ?? "",
        headers: request.headers,
        body: Buffer.concat(parts).toString("utf8"),
      });
      response.statusCode = request.url === "/fail" ? 500 : 200;
      response.end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, deliveries };
}

describe("scheduled exports", () => {
  let cloud: TestCloud;
  let acme: Credentials;
  let globex: Credentials;
  let session: string;
  let receiver: Awaited<ReturnType<typeof startReceiver>>;
  // Samples every 5 s around now, so every schedule's first tick has a full minute of data.
  const start = Date.now() - (Date.now() % MINUTE) - 5 * MINUTE;
  const stored: TelemetrySample[] = Array.from({ length: 240 }, (_, seq) => ({
    seq,
    ts: start + seq * 5000,
    m: { temperature: 20 + seq / 8, pressure: 99_000 + seq },
  }));
  const logger = pino({ level: "silent" });

  const api = (method: "GET" | "POST" | "DELETE", url: string, payload?: object, token = session) =>
    cloud.app.inject({ method, url, headers: bearer(token), ...(payload && { payload }) });

  async function schedule(fields: object): Promise<ScheduleView> {
    const body = { name: "test", cron: "* * * * *", devices: ["dev-1"], rangeSeconds: 60, format: "csv", ...fields };
    const response = await api("POST", "/api/exports/schedules", body);
    assert.equal(response.statusCode, 201, response.body);
    return response.json();
  }

  async function runsOf(scheduleId: string): Promise<RunView[]> {
    const response = await api("GET", `/api/exports/runs?scheduleId=${scheduleId}`);
    assert.equal(response.statusCode, 200);
    return response.json().items;
  }

  /** The stored samples a run of tick `tick` over `rangeSeconds` must hold. */
  function expected(tick: number, rangeSeconds = 60) {
    return stored
      .filter((sample) => sample.ts >= tick - rangeSeconds * 1000 && sample.ts < tick)
      .map((sample) => ({ deviceId: "dev-1", boot: 4, ...sample }));
  }

  before(async () => {
    cloud = await startTestCloud({ EXPORT_SCHEDULER: "off" });
    acme = await bootstrapTenant(cloud.db, "Acme", ["dev-1", "dev-2"]);
    globex = await bootstrapTenant(cloud.db, "Globex", ["gx-1"]);
    session = await login(cloud.app, acme.admin.email);
    await new TelemetryStore(cloud.db).store(acme.tenantId, [
      { deviceId: "dev-1", batch: { v: 1, boot: 4, samples: stored } },
    ]);
    receiver = await startReceiver();
  });
  after(async () => {
    receiver?.server.close();
    await cloud?.close();
  });

  test("a schedule fires at its tick, not before, and POSTs the range before the tick to the webhook", async () => {
    const created = await schedule({ destination: { type: "webhook", url: `${receiver.url}/hook` } });
    const tick = created.nextRunAt;
    assert.equal(tick % MINUTE, 0);
    let now = tick - 1;
    const scheduler = new ExportScheduler(cloud.db, logger, { now: () => now });
    assert.deepEqual(await scheduler.poll(), []);
    const mine = () => receiver.deliveries.filter((d) => d.headers["x-kestrel-schedule"] === created.scheduleId);
    assert.equal(mine().length, 0);

    now = tick + 300;
    const [run] = await scheduler.poll();
    assert.equal(run?.status, "succeeded");
    assert.equal(mine().length, 1);
    const delivery = mine()[0];
    assert.equal(delivery?.headers["content-type"], "text/csv; charset=utf-8");
    const [header, ...rows] = parseCsv(delivery?.body ?? "");
    assert.deepEqual(header, [...CSV_HEADER]);
    const samples = expected(tick);
    assert.equal(samples.length, 12);
    assert.deepEqual(
      rows,
      samples.flatMap((s) =>
        Object.entries(s.m).map(([metric, value]) => [
          new Date(s.ts).toISOString(),
          "dev-1",
          "4",
          String(s.seq),
          metric,
          String(value),
        ]),
      ),
    );

    now = tick + 30_000;
    assert.deepEqual(await scheduler.poll(), [], "one run per tick");
    const [recorded] = await runsOf(created.scheduleId);
    assert.equal(recorded?.status, "succeeded");
    assert.equal(recorded?.tick, tick);
    assert.equal(recorded?.from, tick - MINUTE);
    assert.equal(recorded?.rows, samples.length * 2);
    assert.equal(recorded?.bytes, Buffer.byteLength(delivery?.body ?? ""));
    assert.equal(recorded?.fileUrl, null);
    assert.equal((await api("DELETE", `/api/exports/schedules/${created.scheduleId}`)).statusCode, 204);
  });

  test("two schedulers on one database run each tick once, and the stored file downloads", async () => {
    const created = await schedule({ format: "json", destination: { type: "download" } });
    const tick = created.nextRunAt;
    let now = tick + 100;
    const replicas = [1, 2].map(() => new ExportScheduler(cloud.db, logger, { now: () => now }));
    const first = await Promise.all(replicas.map((replica) => replica.poll()));
    assert.equal(first.flat().length, 1);
    now = tick + MINUTE + 100;
    const second = await Promise.all(replicas.map((replica) => replica.poll()));
    assert.equal(second.flat().length, 1);
    // A replica that starts later claims nothing already run.
    assert.deepEqual(await new ExportScheduler(cloud.db, logger, { now: () => now }).poll(), []);

    const runs = await runsOf(created.scheduleId);
    assert.deepEqual(
      runs.map((run) => [run.tick, run.status]),
      [
        [tick + MINUTE, "succeeded"],
        [tick, "succeeded"],
      ],
    );
    const file = await api("GET", runs[1]?.fileUrl ?? "");
    assert.equal(file.statusCode, 200);
    assert.equal(file.headers["content-type"], "application/json");
    assert.match(String(file.headers["content-disposition"]), /^attachment; filename="telemetry-.*\.json"$/);
    assert.deepEqual(file.json(), expected(tick));
    assert.equal((await api("DELETE", `/api/exports/schedules/${created.scheduleId}`)).statusCode, 204);
  });

  test("a started scheduler runs due ticks on its timer, and stop() waits for the run under way", async () => {
    const created = await schedule({ format: "ndjson", destination: { type: "webhook", url: `${receiver.url}/bg` } });
    const now = created.nextRunAt + 100;
    const scheduler = new ExportScheduler(cloud.db, logger, { now: () => now, pollMs: 20 });
    scheduler.start();
    try {
      const deadline = Date.now() + 20_000;
      while ((await runsOf(created.scheduleId)).length === 0 && Date.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    } finally {
      await scheduler.stop();
    }
    const runs = await runsOf(created.scheduleId);
    assert.deepEqual(
      runs.map((run) => [run.tick, run.status]),
      [[created.nextRunAt, "succeeded"]],
    );
    const delivered = receiver.deliveries.filter((d) => d.headers["x-kestrel-run"] === runs[0]?.runId);
    assert.equal(delivered.length, 1);
    assert.deepEqual(
      delivered[0]?.body
        .split("\n")
        .filter(Boolean)
        .map((line) => JSON.parse(line)),
      expected(created.nextRunAt),
    );
    assert.equal((await api("DELETE", `/api/exports/schedules/${created.scheduleId}`)).statusCode, 204);
  });

  test("a failed delivery is recorded as failed with its reason", async () => {
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, "127.0.0.1", resolve));
    const closedUrl = `http://127.0.0.1:${(closed.address() as AddressInfo).port}/`;
    await new Promise<void>((resolve) => closed.close(() => resolve()));
    const refusing = await schedule({ destination: { type: "webhook", url: `${receiver.url}/fail` } });
    const unreachable = await schedule({ destination: { type: "webhook", url: closedUrl } });
    const now = Math.max(refusing.nextRunAt, unreachable.nextRunAt) + 100;
    const runs = await new ExportScheduler(cloud.db, logger, { now: () => now }).poll();
    assert.equal(runs.length, 2);
    const [failed] = await runsOf(refusing.scheduleId);
    assert.equal(failed?.status, "failed");
    assert.equal(failed?.error, "webhook answered HTTP 500");
    assert.ok(failed?.finishedAt);
    const [lost] = await runsOf(unreachable.scheduleId);
    assert.equal(lost?.status, "failed");
    assert.match(lost?.error ?? "", /ECONNREFUSED/);
    const file = await api("GET", `/api/exports/runs/${failed?.runId}/file`);
    assert.equal(file.statusCode, 404);
    for (const { scheduleId } of [refusing, unreachable]) {
      assert.equal((await api("DELETE", `/api/exports/schedules/${scheduleId}`)).statusCode, 204);
    }
  });

  test("schedules are validated, listed and deleted; another organization's answer 404", async () => {
    for (const fields of [
      { cron: "* * * *" },
      { cron: "*/5 * * * * *" },
      { cron: "61 * * * *" },
      { destination: { type: "webhook", url: "ftp://example.com/x" } },
      { destination: { type: "webhook", url: "https://user:secret@example.com/x" } },
      { destination: { type: "email", to: "a@b.c" } },
      { metrics: ["Temperature"] },
      { devices: ["bad id"] },
      { rangeSeconds: 10 },
      { devices: "some" },
    ]) {
      const response = await api("POST", "/api/exports/schedules", {
        name: "x",
        cron: "0 * * * *",
        devices: ["dev-1"],
        rangeSeconds: 3600,
        format: "csv",
        destination: { type: "download" },
        ...fields,
      });
      assert.equal(response.statusCode, 400, JSON.stringify(fields));
    }
    const foreign = await api("POST", "/api/exports/schedules", {
      name: "x",
      cron: "0 * * * *",
      devices: ["gx-1"],
      rangeSeconds: 3600,
      format: "csv",
      destination: { type: "download" },
    });
    assert.equal(foreign.statusCode, 404);

    const created = await schedule({ name: "  Hourly  ", devices: "all", destination: { type: "download" } });
    assert.equal(created.name, "Hourly");
    const listed = await api("GET", "/api/exports/schedules");
    assert.deepEqual(listed.json().items, [created]);

    const globexSession = await login(cloud.app, globex.admin.email);
    assert.deepEqual((await api("GET", "/api/exports/schedules", undefined, globexSession)).json().items, []);
    const stranger = await api("DELETE", `/api/exports/schedules/${created.scheduleId}`, undefined, globexSession);
    assert.equal(stranger.statusCode, 404);
    const now = created.nextRunAt + 10;
    const [run] = await new ExportScheduler(cloud.db, logger, { now: () => now }).poll();
    assert.ok(run);
    for (const url of [`/api/exports/runs/${run._id}`, `/api/exports/runs/${run._id}/file`]) {
      assert.equal((await api("GET", url, undefined, globexSession)).statusCode, 404, url);
      assert.equal((await api("GET", url)).statusCode, 200, url);
    }
    assert.deepEqual((await api("GET", "/api/exports/runs", undefined, globexSession)).json().items, []);

    await addMember(cloud.db, acme.tenantId, "viewer@acme.test", "viewer");
    const viewer = await login(cloud.app, "viewer@acme.test");
    assert.equal((await api("GET", "/api/exports/schedules", undefined, viewer)).statusCode, 200);
    assert.equal(
      (await api("DELETE", `/api/exports/schedules/${created.scheduleId}`, undefined, viewer)).statusCode,
      403,
    );

    assert.equal((await api("DELETE", `/api/exports/schedules/${created.scheduleId}`)).statusCode, 204);
    assert.equal((await api("DELETE", `/api/exports/schedules/${created.scheduleId}`)).statusCode, 404);
    assert.deepEqual((await api("GET", "/api/exports/schedules")).json().items, []);
  });

  test("runs are listed latest first, page by page", async () => {
    const created = await schedule({ destination: { type: "download" } });
    for (let i = 0; i < 3; i++) {
      const now = created.nextRunAt + i * MINUTE;
      await new ExportScheduler(cloud.db, logger, { now: () => now }).poll();
    }
    const page1 = await api("GET", `/api/exports/runs?scheduleId=${created.scheduleId}&limit=2`);
    const { items, cursor } = page1.json();
    assert.deepEqual(
      items.map((run: RunView) => run.tick),
      [created.nextRunAt + 2 * MINUTE, created.nextRunAt + MINUTE],
    );
    const page2 = await api("GET", `/api/exports/runs?scheduleId=${created.scheduleId}&limit=2&cursor=${cursor}`);
    assert.deepEqual(
      page2.json().items.map((run: RunView) => run.tick),
      [created.nextRunAt],
    );
    assert.equal(page2.json().cursor, null);
    assert.equal((await api("GET", "/api/exports/runs?cursor=nonsense")).statusCode, 400);
    assert.equal((await api("DELETE", `/api/exports/schedules/${created.scheduleId}`)).statusCode, 204);
  });
});
