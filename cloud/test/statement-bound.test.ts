// The embedded FerretDB must never get a command that can wedge it: one update of 100 statements
// (or enough concurrent ones) holds its whole connection pool and hangs the server. A fleet's worth
// of traffic goes through the real code paths here (devices, telemetry, states, logs, commands,
// alert rule states, alerts and their events, an OTA campaign over the fleet), against the real FerretDB, while the driver's
// command monitoring records every insert, update and delete and its statement count.

import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { buildEsp32Image } from "@kestrel/wire/esp32-image";
import { type CommandStartedEvent, MongoClient } from "mongodb";
import { nodeSha256 } from "../src/artifacts/validators.ts";
import { secretHash } from "../src/auth/secrets.ts";
import { DeviceStore } from "../src/devices/device-store.ts";
import type { DeviceList } from "../src/devices/device-view.ts";
import { INSERT_OR_DELETE_STATEMENTS, UPDATE_STATEMENTS } from "../src/storage/command-bounds.ts";
import { startEmbeddedFerretDb } from "../src/storage/embedded-ferretdb.ts";
import type { Credentials } from "../src/tenants/bootstrap.ts";
import { batch, bearer, bootstrapTenant, ingest, login, startTestCloud, type TestCloud } from "./helpers.ts";

/** The fleet: more than the 100 statements that wedge FerretDB, in every write path. */
const FLEET = 500;
const WEDGE = 100;
const deviceIds = Array.from({ length: FLEET }, (_, i) => `fleet-${String(i).padStart(4, "0")}`);

interface WriteCommand {
  name: "insert" | "update" | "delete";
  collection: string;
  statements: number;
}

function writeCommand(event: CommandStartedEvent): WriteCommand | undefined {
  const { command } = event;
  if (event.commandName === "insert")
    return { name: "insert", collection: command.insert, statements: command.documents.length };
  if (event.commandName === "update")
    return { name: "update", collection: command.update, statements: command.updates.length };
  if (event.commandName === "delete")
    return { name: "delete", collection: command.delete, statements: command.deletes.length };
  return undefined;
}

describe("no command of 100 statements or more reaches the embedded FerretDB", () => {
  let cloud: TestCloud;
  let fleet: Credentials;
  let admin: string;
  const sent: WriteCommand[] = [];

  before(async () => {
    // The alert engine sweeps every second, so the state rules' writes happen within the test.
    cloud = await startTestCloud({ ALERT_SWEEP_SECONDS: "1" }, { monitorCommands: true });
    cloud.client.on("commandStarted", (event: CommandStartedEvent) => {
      const write = writeCommand(event);
      if (write) sent.push(write);
    });
    fleet = await bootstrapTenant(cloud.db, "Fleet", []);
    admin = await login(cloud.app, fleet.admin.email);
  });
  after(() => cloud?.close());

  const api = async (method: "GET" | "POST" | "PATCH", url: string, payload?: object) => {
    const response = await cloud.app.inject({ method, url, headers: bearer(admin), payload });
    assert.ok(response.statusCode < 300, `${method} ${url} answered ${response.statusCode}: ${response.body}`);
    return response;
  };

  /** How many devices have an alert of the rule: every page of the list. */
  const alerted = async (ruleId: string) => {
    const devices = new Set<string>();
    let cursor: string | null = null;
    do {
      const page: { items: Array<{ deviceId: string }>; cursor: string | null } = (
        await api("GET", `/api/alerts?ruleId=${ruleId}&limit=200${cursor ? `&cursor=${cursor}` : ""}`)
      ).json();
      for (const alert of page.items) devices.add(alert.deviceId);
      cursor = page.cursor;
    } while (cursor);
    return devices.size;
  };

  test("a fleet created, labelled, reporting, logging and commanded at once; every write bounded", async () => {
    for (let i = 0; i < FLEET; i += 25) {
      await Promise.all(deviceIds.slice(i, i + 25).map((deviceId) => api("POST", "/api/devices", { deviceId })));
    }
    for (let i = 0; i < FLEET; i += 25) {
      await Promise.all(
        deviceIds
          .slice(i, i + 25)
          .map((deviceId, j) => api("PATCH", `/api/devices/${deviceId}`, { tags: [`line-${(i + j) % 7}`] })),
      );
    }

    // Rules that fire for every device: the sample evaluator (in the apply pass) and the alert engine
    // (from the state journal) each write the whole fleet's rule states, alerts and events.
    const sampleRule = (
      await api("POST", "/api/alerts/rules", {
        name: "Fleet warm",
        condition: { kind: "threshold", metric: "temperature", op: "above", high: 0, forSeconds: 0 },
      })
    ).json<{ ruleId: string }>().ruleId;
    const stateRule = (
      await api("POST", "/api/alerts/rules", { name: "Fleet in safe mode", condition: { kind: "safe_mode" } })
    ).json<{ ruleId: string }>().ruleId;

    // One request as a gateway sends it for a whole fleet: 500 devices' telemetry, states and logs.
    const start = Date.now() - 60_000;
    const receivedAt = Date.now();
    const request = {
      telemetry: deviceIds.map((deviceId) => ({ deviceId, batch: batch(1, 0, 5, start) })),
      states: deviceIds.map((deviceId) => ({
        deviceId,
        receivedAt,
        state: { v: 1, online: true, fw: "1.4.0", mode: "safe" },
      })),
      logs: deviceIds.map((deviceId) => ({
        deviceId,
        receivedAt,
        batch: {
          v: 1,
          records: [0, 1, 2].map((seq) => ({ boot: 1, seq, ts: start + seq, level: "info", tag: "main", msg: "up" })),
        },
      })),
    };
    const first = await ingest(cloud.app, fleet.gatewayKey, request);
    assert.equal(first.statusCode, 200, first.body);
    assert.equal(first.json<{ accepted: number }>().accepted, FLEET * 5);
    // The same request again (a gateway retry): stored once.
    assert.equal((await ingest(cloud.app, fleet.gatewayKey, request)).statusCode, 200);

    // Applying 500 devices' buckets, rollups, latest values and device updates takes a few rounds.
    const applied = async () => {
      const seen = new Set<string>();
      let cursor: string | null = null;
      do {
        const page: DeviceList = (
          await api("GET", `/api/devices?limit=200${cursor ? `&cursor=${cursor}` : ""}`)
        ).json<DeviceList>();
        for (const device of page.items) {
          if (device.online && device.fw === "1.4.0" && device.lastSeen !== null && device.latest !== null) {
            seen.add(device.deviceId);
          }
        }
        cursor = page.nextCursor;
      } while (cursor);
      return seen.size;
    };
    const latestCounts = async () =>
      (await api("GET", "/api/telemetry/latest?limit=1000")).json<{
        items: Array<{ samples: { stored: number; duplicates: number } }>;
      }>().items;
    // Every device: its 5 samples stored, the retry's 5 counted as duplicates.
    const countedOnce = async () =>
      (await latestCounts()).filter(({ samples }) => samples.stored === 5 && samples.duplicates === 5).length;
    const deadline = Date.now() + 90_000;
    /** The probe's count once it reaches the fleet, or its last count at the deadline. */
    const settled = async (probe: () => Promise<number>) => {
      let count = await probe();
      while (count < FLEET && Date.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 250));
        count = await probe();
      }
      return count;
    };
    assert.equal(await settled(applied), FLEET, "every device shows its state, lastSeen and latest sample");
    assert.equal(await settled(countedOnce), FLEET, "every device's samples counted once, the retry as duplicates");
    const latest = await latestCounts();
    assert.equal(latest.length, FLEET);
    for (const item of latest) assert.deepEqual(item.samples, { stored: 5, duplicates: 5 });
    assert.equal(await settled(() => alerted(sampleRule)), FLEET, "every device's samples fired the threshold rule");
    assert.equal(await settled(() => alerted(stateRule)), FLEET, "every device's state fired the safe-mode rule");

    // Commands for the whole fleet, claimed and acknowledged by the gateway.
    const ids = new Map<string, string>();
    for (let i = 0; i < 150; i += 25) {
      await Promise.all(
        deviceIds.slice(i, i + 25).map(async (deviceId) => {
          const answer = await api("POST", `/api/devices/${deviceId}/commands`, { name: "ping" });
          ids.set(deviceId, answer.json<{ id: string }>().id);
        }),
      );
    }
    const claimed = await cloud.app.inject({
      method: "POST",
      url: "/api/gateway/v1/commands/poll",
      headers: bearer(fleet.gatewayKey),
      payload: { devices: deviceIds.slice(0, 150), max: 100 },
    });
    assert.equal(claimed.json<{ commands: unknown[] }>().commands.length, 100);
    const acks = await cloud.app.inject({
      method: "POST",
      url: "/api/gateway/v1/command-acks",
      headers: bearer(fleet.gatewayKey),
      payload: {
        acks: [...ids].map(([deviceId, id]) => ({
          deviceId,
          receivedAt: Date.now(),
          ack: { v: 1, id, status: "done" },
        })),
      },
    });
    assert.equal(acks.json<{ applied: number }>().applied, 150);

    // A signed update for the whole fleet: its devices stored, offered, and every device's report applied.
    await api("POST", "/api/signing/keys");
    const image = Buffer.from(buildEsp32Image({ chip: "esp32", version: "1.5.0", projectName: "kestrel" }, nodeSha256));
    const uploaded = await cloud.app.inject({
      method: "POST",
      url: "/api/artifacts?kind=firmware&name=fleet-fw&chip=esp32",
      headers: { ...bearer(admin), "content-type": "application/octet-stream" },
      payload: image,
    });
    assert.equal(uploaded.statusCode, 201, uploaded.body);
    const { artifactId, sha256 } = uploaded.json<{ artifactId: string; sha256: string }>();
    await api("POST", `/api/artifacts/${artifactId}/signatures`);
    const tags = Array.from({ length: 7 }, (_, line) => `line-${line}`);
    const campaignId = (
      await api("POST", "/api/campaigns", {
        name: "fleet",
        artifactId,
        target: { tags },
        stages: [{ percent: 100, soakSeconds: 0 }],
      })
    ).json<{ campaignId: string }>().campaignId;
    let offered = 0;
    for (let i = 0; i < FLEET; i += 200) {
      const poll = await cloud.app.inject({
        method: "POST",
        url: "/api/gateway/v1/artifacts/offers/poll",
        headers: bearer(fleet.gatewayKey),
        payload: { devices: deviceIds.slice(i, i + 200), max: 200 },
      });
      offered += poll.json<{ offers: unknown[] }>().offers.length;
    }
    assert.equal(offered, FLEET);
    const reports = await cloud.app.inject({
      method: "POST",
      url: "/api/gateway/v1/artifact-reports",
      headers: bearer(fleet.gatewayKey),
      payload: {
        reports: deviceIds.map((deviceId) => ({
          deviceId,
          receivedAt: Date.now(),
          report: { v: 1, campaign: campaignId, sha256, status: "downloading", bytes: 0, total: image.length },
        })),
      },
    });
    assert.equal(reports.json<{ applied: number }>().applied, FLEET, reports.body);

    // The bulk loader benchmarks and imports use.
    await new DeviceStore(cloud.db).createMany(
      fleet.tenantId,
      Array.from({ length: 1_000 }, (_, i) => ({ deviceId: `bulk-${i}`, changes: {} })),
      secretHash("bulk"),
    );

    const largest = (name: WriteCommand["name"]) =>
      Math.max(0, ...sent.filter((command) => command.name === name).map((command) => command.statements));
    const total = (name: WriteCommand["name"]) =>
      sent.filter((command) => command.name === name).reduce((sum, command) => sum + command.statements, 0);
    // The workload would have sent commands far past the bound had any path not been bounded.
    assert.ok(total("update") >= 4 * FLEET, `update statements sent: ${total("update")}`);
    assert.ok(total("insert") >= 2 * FLEET, `documents inserted: ${total("insert")}`);
    assert.ok(total("delete") >= 1, `delete statements sent: ${total("delete")}`);
    const wedging = sent.filter((command) => command.statements >= WEDGE);
    assert.deepEqual(wedging, [], "commands of 100 statements or more");
    assert.ok(largest("update") <= UPDATE_STATEMENTS, `largest update: ${largest("update")}`);
    assert.ok(largest("insert") <= INSERT_OR_DELETE_STATEMENTS, `largest insert: ${largest("insert")}`);
    assert.ok(largest("delete") <= INSERT_OR_DELETE_STATEMENTS, `largest delete: ${largest("delete")}`);
  });
});

// Why the bound exists, and the day it can go: if a FerretDB upgrade fixes this, this test fails.
test("FerretDB v1.24 wedges on one update command of 100 statements, and answers 99", async () => {
  const dir = await mkdtemp(join(tmpdir(), "kestrel-wedge-"));
  const ferret = await startEmbeddedFerretDb({ dataDir: join(dir, "ferretdb"), stopTimeoutMs: 500 });
  const client = new MongoClient(ferret.uri, { serverSelectionTimeoutMS: 2_000 });
  try {
    const docs = client.db("wedge").collection<{ _id: string; n: number }>("docs");
    await docs.insertMany(Array.from({ length: WEDGE }, (_, i) => ({ _id: `d${i}`, n: 0 })));
    const updates = (count: number) =>
      Array.from({ length: count }, (_, i) => ({
        updateOne: { filter: { _id: `d${i}` }, update: { $inc: { n: 1 } } },
      }));
    await docs.bulkWrite(updates(WEDGE - 1), { ordered: false });
    const wedged = docs.bulkWrite(updates(WEDGE), { ordered: false }).then(
      () => "answered",
      () => "failed",
    );
    const outcome = await Promise.race([wedged, new Promise((resolve) => setTimeout(resolve, 5_000, "hung"))]);
    assert.equal(outcome, "hung");
  } finally {
    await client.close(true);
    await ferret.stop();
    await rm(dir, { recursive: true, force: true });
  }
});
