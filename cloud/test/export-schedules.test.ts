import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { after, before, describe, test } from "node:test";
import type { TelemetrySample } from "@kestrel/wire";
import { pino } from "pino";
import { SecretBox } from "../src/auth/secret-box.ts";
import { CSV_HEADER } from "../src/exports/export-format.ts";
import { ExportFileExpiry } from "../src/exports/file-expiry.ts";
import { ExportRunStore, runId } from "../src/exports/run-store.ts";
import type { CreatedScheduleView, RunView, ScheduleView } from "../src/exports/schedule-schema.ts";
import { ExportScheduler, type SchedulerOptions } from "../src/exports/scheduler.ts";
import { TelemetryStore } from "../src/telemetry/telemetry-store.ts";
import type { Credentials } from "../src/tenants/bootstrap.ts";
import { WebhookEgress, WebhookRefused } from "../src/webhooks/egress.ts";
import { parseCsv } from "./csv.ts";
import { addMember, bearer, bootstrapTenant, login, startTestCloud, type TestCloud } from "./helpers.ts";
import { closedUrl, type Receiver, signatureValid, startReceiver } from "./webhook-receiver.ts";

const MINUTE = 60_000;

describe("scheduled exports", () => {
  let cloud: TestCloud;
  let acme: Credentials;
  let globex: Credentials;
  let session: string;
  let receiver: Receiver;
  // Samples every 5 s around now, so every schedule's first tick has a full minute of data.
  const start = Date.now() - (Date.now() % MINUTE) - 5 * MINUTE;
  const stored: TelemetrySample[] = Array.from({ length: 240 }, (_, seq) => ({
    seq,
    ts: start + seq * 5000,
    m: { temperature: 20 + seq / 8, pressure: 99_000 + seq },
  }));
  const logger = pino({ level: "silent" });
  const secretsKey = randomBytes(32);
  const secrets = new SecretBox(secretsKey);
  const loopback = new WebhookEgress(["127.0.0.0/8"]);

  /**
   * A scheduler as one replica runs it, on the test cloud's key and allow-list. No allowed lateness
   * unless a test asks for it, so a tick runs as soon as the clock passes it.
   */
  const replica = (now: () => number, options: Partial<SchedulerOptions> = {}) =>
    new ExportScheduler(cloud.db, logger, { secrets, egress: loopback, now, allowedLatenessMs: 0, ...options });

  const api = (method: "GET" | "POST" | "DELETE", url: string, payload?: object, token = session) =>
    cloud.app.inject({ method, url, headers: bearer(token), ...(payload && { payload }) });

  async function schedule(fields: object): Promise<CreatedScheduleView> {
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
    cloud = await startTestCloud({
      EXPORT_SCHEDULER: "off",
      SECRETS_KEY: secretsKey.toString("base64"),
      WEBHOOK_ALLOWED_NETWORKS: "127.0.0.0/8",
    });
    acme = await bootstrapTenant(cloud.db, "Acme", ["dev-1", "dev-2"]);
    globex = await bootstrapTenant(cloud.db, "Globex", ["gx-1"]);
    session = await login(cloud.app, acme.admin.email);
    await new TelemetryStore(cloud.db).store(acme.tenantId, [
      { deviceId: "dev-1", batch: { v: 1, boot: 4, samples: stored } },
    ]);
    receiver = await startReceiver();
  });
  after(async () => {
    await receiver?.close();
    await cloud?.close();
  });

  test("a schedule fires at its tick, not before, and POSTs the range before the tick to the webhook", async () => {
    const created = await schedule({ destination: { type: "webhook", url: `${receiver.url}/hook` } });
    const tick = created.nextRunAt;
    assert.equal(tick % MINUTE, 0);
    let now = tick - 1;
    const scheduler = replica(() => now);
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
    const replicas = [1, 2].map(() => replica(() => now));
    const first = await Promise.all(replicas.map((replica) => replica.poll()));
    assert.equal(first.flat().length, 1);
    now = tick + MINUTE + 100;
    const second = await Promise.all(replicas.map((replica) => replica.poll()));
    assert.equal(second.flat().length, 1);
    // A replica that starts later claims nothing already run.
    assert.deepEqual(await replica(() => now).poll(), []);

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
    const scheduler = replica(() => now, { pollMs: 20 });
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
    const refusing = await schedule({ destination: { type: "webhook", url: `${receiver.url}/fail` } });
    const unreachable = await schedule({ destination: { type: "webhook", url: await closedUrl() } });
    const now = Math.max(refusing.nextRunAt, unreachable.nextRunAt) + 100;
    const runs = await replica(() => now).poll();
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
      { destination: { type: "webhook", url: "http://10.1.2.3/x" } },
      { destination: { type: "webhook", url: "http://169.254.169.254/latest/meta-data" } },
      { destination: { type: "webhook", url: "https://192.168.0.10/x" } },
      { destination: { type: "webhook", url: "http://[fd00::1]/x" } },
      { destination: { type: "webhook", url: "http://[::ffff:10.0.0.1]/x" } },
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
    const [run] = await replica(() => now).poll();
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
      await replica(() => now).poll();
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

  test("webhook deliveries are signed with the schedule's secret, shown once; a tampered body fails", async () => {
    const created = await schedule({ destination: { type: "webhook", url: `${receiver.url}/signed` } });
    const secret = created.signingSecret;
    assert.ok(secret && secret.length >= 32, "the create answer shows the secret");
    const listed = (await api("GET", "/api/exports/schedules")).json().items as ScheduleView[];
    assert.ok(listed.some((item) => item.scheduleId === created.scheduleId));
    assert.ok(!JSON.stringify(listed).includes(secret), "listings never show it");
    const stored = await cloud.db.collection("export_schedules").findOne({ _id: created.scheduleId as never });
    assert.ok(stored && !JSON.stringify(stored).includes(secret), "stored sealed, not in the clear");
    assert.equal(secrets.open(String(stored.secret)), secret);

    const now = created.nextRunAt + 100;
    const [run] = await replica(() => now).poll();
    assert.equal(run?.status, "succeeded", run?.error);
    const delivery = receiver.deliveries.find((d) => d.headers["x-kestrel-run"] === run?._id);
    assert.ok(delivery);
    assert.match(String(delivery.headers["kestrel-signature"]), new RegExp(`^t=${Math.floor(now / 1000)},v1=`));
    assert.equal(signatureValid(delivery.headers, delivery.body, secret), true);
    assert.equal(signatureValid(delivery.headers, delivery.body.replace("temperature", "temperaturf"), secret), false);
    assert.equal(signatureValid(delivery.headers, `${delivery.body} `, secret), false);
    assert.equal(signatureValid(delivery.headers, delivery.body, `${secret}x`), false);
    assert.equal((await api("DELETE", `/api/exports/schedules/${created.scheduleId}`)).statusCode, 204);
  });

  test("webhooks into internal networks are refused unless allowed, also when a name resolves there", async () => {
    const created = await schedule({ destination: { type: "webhook", url: `${receiver.url}/inward` } });
    const now = created.nextRunAt + 100;
    // A replica without the tests' allow-list: the stored URL points at loopback.
    const [run] = await replica(() => now, { egress: new WebhookEgress() }).poll();
    assert.equal(run?.status, "failed");
    assert.match(run?.error ?? "", /loopback, private or link-local/);
    assert.equal(receiver.deliveries.filter((d) => d.path === "/inward").length, 0);

    const strict = new WebhookEgress();
    assert.match(strict.urlProblem("http://localhost:8080/x") ?? "", /loopback/);
    assert.equal(strict.urlProblem("https://hooks.example.com/x"), undefined);
    assert.equal(strict.addressProblem("8.8.8.8"), undefined);
    assert.equal(strict.addressProblem("::ffff:8.8.8.8"), undefined);
    assert.match(strict.addressProblem("::ffff:127.0.0.1") ?? "", /loopback/);
    assert.match(strict.addressProblem("100.64.1.1") ?? "", /private/);
    assert.equal(new WebhookEgress(["10.20.0.0/16"]).addressProblem("10.20.3.4"), undefined);
    // The connect-time check sees what DNS answers, whatever the name looks like.
    const resolved = await new Promise<unknown>((resolve) =>
      strict.lookup("localhost", { all: true }, (error, address) => resolve(error ?? address)),
    );
    assert.ok(resolved instanceof WebhookRefused, String(resolved));
    assert.equal((await api("DELETE", `/api/exports/schedules/${created.scheduleId}`)).statusCode, 204);
  });

  test("a run left running by a dead replica is retried by another one, which delivers", async () => {
    const created = await schedule({ destination: { type: "webhook", url: `${receiver.url}/retry` } });
    const tick = created.nextRunAt;
    const runs = new ExportRunStore(cloud.db);
    // What a replica that died mid-export leaves: attempt 1 `running`, its lease never renewed.
    const lost = await runs.claim(
      {
        _id: runId(created.scheduleId, tick),
        tenantId: acme.tenantId,
        scheduleId: created.scheduleId,
        tick: new Date(tick),
        attempt: 1,
        from: new Date(tick - MINUTE),
        to: new Date(tick),
        format: "csv",
        destination: "webhook",
      },
      new Date(tick + 100),
      new Date(tick + 20_100),
    );
    assert.ok(lost);
    let now = tick + 10_000;
    const other = replica(() => now);
    assert.deepEqual(await other.poll(), [], "a live lease is left alone");

    now = tick + 20_200;
    const [retried] = await other.poll();
    assert.equal(retried?._id, runId(created.scheduleId, tick, 2));
    assert.equal(retried?.status, "succeeded", retried?.error);
    assert.deepEqual(
      (await runsOf(created.scheduleId)).map((run) => [run.tick, run.attempt, run.status, run.error]),
      [
        [tick, 2, "succeeded", null],
        [tick, 1, "failed", "replica_lost"],
      ],
    );
    const delivered = receiver.deliveries.filter((d) => d.path === "/retry");
    assert.equal(delivered.length, 1);
    assert.equal(delivered[0]?.headers["x-kestrel-tick"], String(tick));
    assert.equal(
      signatureValid(delivered[0]?.headers ?? {}, delivered[0]?.body ?? "", created.signingSecret ?? ""),
      true,
    );
    assert.equal(parseCsv(delivered[0]?.body ?? "").length - 1, expected(tick).length * 2);
    assert.equal(await cloud.db.collection("export_run_leases").countDocuments({}), 0);
    assert.deepEqual(await replica(() => now + 1000).poll(), [], "nothing left to recover");
    assert.equal((await api("DELETE", `/api/exports/schedules/${created.scheduleId}`)).statusCode, 204);
  });

  test("a lost tick is retried a bounded number of times", async () => {
    const created = await schedule({ destination: { type: "download" } });
    const tick = created.nextRunAt;
    const runs = new ExportRunStore(cloud.db);
    const attempt = {
      tenantId: acme.tenantId,
      scheduleId: created.scheduleId,
      tick: new Date(tick),
      from: new Date(tick - MINUTE),
      to: new Date(tick),
      format: "csv" as const,
      destination: "download" as const,
    };
    for (const n of [1, 2, 3]) {
      const id = runId(created.scheduleId, tick, n);
      assert.ok(await runs.claim({ ...attempt, _id: id, attempt: n }, new Date(tick), new Date(tick + 1000)));
      if (n < 3) await runs.abandon(id, new Date(tick + 500));
    }
    const now = tick + 2000;
    // Attempt 3 of 3 lost: recorded failed and not tried again.
    assert.deepEqual(await replica(() => now, { maxAttempts: 3 }).poll(), []);
    assert.deepEqual(
      (await runsOf(created.scheduleId)).map((run) => [run.attempt, run.status, run.error]),
      [
        [3, "failed", "replica_lost"],
        [2, "failed", "replica_lost"],
        [1, "failed", "replica_lost"],
      ],
    );
    assert.equal(await cloud.db.collection("export_run_leases").countDocuments({}), 0);
    assert.equal((await api("DELETE", `/api/exports/schedules/${created.scheduleId}`)).statusCode, 204);
  });

  test("a slow replica keeps its run by renewing the lease; once taken over, it stops without recording", async () => {
    const created = await schedule({ destination: { type: "webhook", url: `${receiver.url}/slow` } });
    const tick = created.nextRunAt;
    const base = Date.now();
    // Real time, moved to just after the tick, so lease renewals happen as they would.
    const clock = () => tick + 100 + (Date.now() - base);
    const leaseMs = 300;
    const slow = replica(clock, { leaseMs });
    const slowRun = slow.poll();
    const sent = () => receiver.deliveries.filter((d) => d.path === "/slow");
    while (sent().length === 0) await new Promise((resolve) => setTimeout(resolve, 20));

    const peer = replica(clock, { leaseMs });
    for (let i = 0; i < 4; i++) {
      assert.deepEqual(await peer.poll(), [], "the renewed lease is not taken over");
      await new Promise((resolve) => setTimeout(resolve, leaseMs / 2));
    }
    // A replica whose clock runs 2 s ahead sees the lease as expired, like one that lost contact with the holder.
    const [takeover] = await replica(() => clock() + 2000, { leaseMs }).poll();
    assert.equal(takeover?.attempt, 2);
    assert.equal(takeover?.status, "succeeded", takeover?.error);
    const [superseded] = await slowRun;
    assert.equal(superseded?.attempt, 1);
    assert.equal(superseded?.status, "failed");
    assert.deepEqual(
      (await runsOf(created.scheduleId)).map((run) => [run.attempt, run.status, run.error]),
      [
        [2, "succeeded", null],
        [1, "failed", "replica_lost"],
      ],
    );
    assert.equal(await cloud.db.collection("export_run_leases").countDocuments({}), 0);
    assert.equal((await api("DELETE", `/api/exports/schedules/${created.scheduleId}`)).statusCode, 204);
  });

  test("stored files expire: deleted by one replica's job, then the download answers 410", async () => {
    const created = await schedule({ destination: { type: "download" } });
    const now = created.nextRunAt + 100;
    const [run] = await replica(() => now).poll();
    assert.ok(run?.expiresAt);
    const expiresAt = run.expiresAt.getTime();
    assert.equal(expiresAt, now + 7 * 86_400_000);
    const view = (await api("GET", `/api/exports/runs/${run._id}`)).json<RunView>();
    assert.equal(view.fileExpiresAt, expiresAt);
    assert.equal((await api("GET", `/api/exports/runs/${run._id}/file`)).statusCode, 200);

    let clock = expiresAt - 1;
    const job = new ExportFileExpiry(cloud.db, logger, { holder: "replica-a", now: () => clock });
    const peer = new ExportFileExpiry(cloud.db, logger, { holder: "replica-b", now: () => clock });
    // Files of the tests before this one expire earlier, and go now.
    assert.equal(typeof (await job.runOnce()), "number");
    assert.equal(await peer.runOnce(), undefined, "the other replica skips the slot");
    assert.equal((await api("GET", `/api/exports/runs/${run._id}/file`)).statusCode, 200);

    clock = expiresAt;
    assert.ok(((await job.runOnce()) ?? 0) >= 1);
    assert.equal(await cloud.db.collection("export_files").countDocuments({ _id: `${run._id}:0` as never }), 0);
    const gone = await api("GET", `/api/exports/runs/${run._id}/file`);
    assert.equal(gone.statusCode, 410);
    assert.equal(gone.headers["content-type"], "application/problem+json; charset=utf-8");
    assert.equal(gone.json().code, "file_expired");
    const after = (await api("GET", `/api/exports/runs/${run._id}`)).json<RunView>();
    assert.equal(after.status, "succeeded");
    assert.equal(after.fileUrl, null);
    assert.equal(await job.runOnce(), 0, "deleted once");
    assert.equal((await api("DELETE", `/api/exports/schedules/${created.scheduleId}`)).statusCode, 204);
  });
  describe("allowed lateness", () => {
    const reportUplink = (gatewayId: string, uplink: { pending: number; oldestAt: number | null; at: number }) =>
      cloud.app.inject({
        method: "POST",
        url: "/api/gateway/v1/uplink-status",
        headers: bearer(acme.gatewayKey),
        payload: { gatewayId, uplink },
      });
    after(() => cloud.db.collection("gateway_uplink_progress").deleteMany({}));

    test("a sample stamped just before the tick that arrives after it is still in that tick's export", async () => {
      const created = await schedule({ devices: ["dev-2"], format: "ndjson", destination: { type: "download" } });
      const tick = created.nextRunAt;
      let now = tick + 3300;
      const scheduler = replica(() => now, { allowedLatenessMs: 15_000 });
      assert.deepEqual(await scheduler.poll(), [], "3.3 s after the tick the device side may still be sending");
      // The sample of 389 ms before the tick arrives now, after the moment the old scheduler ran.
      await new TelemetryStore(cloud.db).store(acme.tenantId, [
        {
          deviceId: "dev-2",
          batch: { v: 1, boot: 1, samples: [{ seq: 0, ts: tick - 389, m: { temperature: 21.5 } }] },
        },
      ]);
      now = tick + 15_000;
      const [run] = await scheduler.poll();
      assert.equal(run?.status, "succeeded");
      const file = await api("GET", `/api/exports/runs/${run?._id}/file`);
      assert.equal(file.statusCode, 200);
      assert.deepEqual(
        file.body
          .trim()
          .split("\n")
          .map((line) => JSON.parse(line).ts),
        [tick - 389],
      );
      const [view] = await runsOf(created.scheduleId);
      assert.equal(view?.dataComplete, true);
      assert.equal((await api("DELETE", `/api/exports/schedules/${created.scheduleId}`)).statusCode, 204);
    });

    test("a gateway's backlog holds the tick until delivered; the maximum wait bounds it", async () => {
      const created = await schedule({ devices: ["dev-2"], destination: { type: "download" } });
      const tick = created.nextRunAt;
      let now = tick + 20_000;
      const scheduler = replica(() => now, { allowedLatenessMs: 5000, maxWaitMs: 120_000 });
      const reported = await reportUplink("site-a", { pending: 40, oldestAt: tick - 10_000, at: now });
      assert.equal(reported.statusCode, 204, reported.body);
      assert.deepEqual(await scheduler.poll(), [], "site-a still holds samples from before the tick");
      await reportUplink("site-a", { pending: 0, oldestAt: null, at: tick + 25_000 });
      now = tick + 25_000;
      const [run] = await scheduler.poll();
      assert.equal(run?.tick.getTime(), tick);
      assert.equal(run?.dataComplete, true);

      // A gateway cut off from the cloud: its last report stays behind; the tick runs at the maximum wait.
      const next = tick + MINUTE;
      await reportUplink("site-b", { pending: 900, oldestAt: next - 30_000, at: next - 1000 });
      now = next + 119_000;
      assert.deepEqual(await scheduler.poll(), []);
      now = next + 120_000;
      const [late] = await scheduler.poll();
      assert.equal(late?.tick.getTime(), next);
      assert.equal(late?.dataComplete, false, "the run says its data may be incomplete");
      await cloud.db.collection("gateway_uplink_progress").deleteMany({});
      assert.equal((await api("DELETE", `/api/exports/schedules/${created.scheduleId}`)).statusCode, 204);
    });

    test("ticks held back by a backlog are all run, in order, once it is delivered", async () => {
      const created = await schedule({ devices: ["dev-2"], destination: { type: "download" } });
      const tick = created.nextRunAt;
      const scheduler = replica(() => now, { allowedLatenessMs: 0, maxWaitMs: 600_000 });
      let now = tick + 1000;
      await reportUplink("site-c", { pending: 0, oldestAt: null, at: now });
      assert.equal((await scheduler.poll()).length, 1, "the first tick, before the backlog");
      now = tick + 3 * MINUTE + 1000;
      await reportUplink("site-c", { pending: 1, oldestAt: tick + 1000, at: now });
      assert.deepEqual(await scheduler.poll(), []);
      await reportUplink("site-c", { pending: 0, oldestAt: null, at: now });
      const runs = await scheduler.poll();
      assert.deepEqual(
        runs.map((run) => run.tick.getTime()),
        [tick + MINUTE, tick + 2 * MINUTE, tick + 3 * MINUTE],
      );
      await cloud.db.collection("gateway_uplink_progress").deleteMany({});
      assert.equal((await api("DELETE", `/api/exports/schedules/${created.scheduleId}`)).statusCode, 204);
    });
  });
});
