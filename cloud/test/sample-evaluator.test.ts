// The sample evaluator holds each device's rule states in memory for as long as its replica holds
// the apply lease without a break; when the lease was another replica's in between, it must start
// from what that replica stored, or it would resolve and fire from states that are no longer true.

import assert from "node:assert/strict";
import { before, test } from "node:test";
import pino from "pino";
import { AlertRecorder } from "../src/alerts/alert-store.ts";
import { RuleStore } from "../src/alerts/rule-store.ts";
import { SampleEvaluator } from "../src/alerts/sample-evaluator.ts";
import { CloudMetrics } from "../src/metrics/cloud-metrics.ts";
import type { Database } from "../src/storage/connect.ts";
import type { AppliedPass } from "../src/telemetry/telemetry-store.ts";
import { ownFerretDb } from "./helpers.ts";

const ferret = ownFerretDb("sample-evaluator");
// Two connections stand for two replicas.
let first: Database;
let second: Database;
before(async () => {
  first = await ferret.connect("sample_evaluator");
  second = await ferret.connect("sample_evaluator");
});

function replica(database: Database): SampleEvaluator {
  const metrics = new CloudMetrics();
  const rules = new RuleStore(database.db);
  return new SampleEvaluator(
    database.db,
    rules,
    new AlertRecorder(database.db, rules, metrics),
    metrics,
    pino({ level: "silent" }),
  );
}

/** Fires above 50, clears at 40 or under, at once. */
function levelRule(tenantId: string) {
  return new RuleStore(first.db).create({
    tenantId,
    name: "Level",
    severity: "warning",
    enabled: true,
    scope: { type: "all" },
    condition: { kind: "threshold", metric: "level", op: "above", high: 50, clearHigh: 40, forSeconds: 0 },
    createdAt: 0,
    updatedAt: 0,
  });
}

test("after another replica's tenure, a replica evaluates from the states that one stored", async () => {
  const tenantId = "t-1";
  const rule = await levelRule(tenantId);
  const a = replica(first);
  const b = replica(second);
  const t0 = Date.UTC(2026, 11, 7, 9, 0, 0);
  const pass = (tenure: number, s: number, level: number): AppliedPass => ({
    journalledAt: [],
    tenure,
    devices: [{ tenantId, deviceId: "d-1", samples: [{ ts: t0 + s * 1000, m: { level }, journalId: `j-${s}` }] }],
  });
  const alerts = () =>
    first.db
      .collection<{ _id: string; firedAt: number; resolvedAt: number | null }>("alerts")
      .find({ ruleId: rule._id })
      .sort({ firedAt: 1 })
      .toArray();

  await a.evaluate(pass(1, 1, 60)); // a fires the first alert...
  await b.evaluate(pass(1, 2, 30)); // ...b, holding the lease now, resolves it and fires the second
  await b.evaluate(pass(1, 3, 60));
  // a's next pass is in a new tenure of its own: its memory of d-1 (firing, first alert) is not the truth.
  await a.evaluate(pass(2, 4, 30));
  const [one, two, ...more] = await alerts();
  assert.equal(more.length, 0);
  assert.deepEqual(
    [one?.firedAt, one?.resolvedAt, two?.firedAt, two?.resolvedAt],
    [t0 + 1000, t0 + 2000, t0 + 3000, t0 + 4000],
    "the second alert is resolved by a, from the state b stored",
  );
});

test("a pass applied again (it failed after its evaluation) does not step the states twice", async () => {
  const tenantId = "t-2";
  const rule = await levelRule(tenantId);
  const evaluator = replica(first);
  const t0 = Date.UTC(2026, 11, 7, 10, 0, 0);
  // One journal document: a crossing and its clear.
  const pass: AppliedPass = {
    journalledAt: [],
    tenure: 1,
    devices: [
      {
        tenantId,
        deviceId: "d-2",
        samples: [
          { ts: t0, m: { level: 60 }, journalId: "j-1" },
          { ts: t0 + 1000, m: { level: 30 }, journalId: "j-1" },
        ],
      },
    ],
  };
  await evaluator.evaluate(pass);
  // The journal's delete failed: the next pass holds the same document, and a new one.
  await evaluator.evaluate({
    ...pass,
    devices: [
      {
        tenantId,
        deviceId: "d-2",
        samples: [...(pass.devices[0]?.samples ?? []), { ts: t0 + 2000, m: { level: 35 }, journalId: "j-2" }],
      },
    ],
  });
  const alerts = await first.db.collection("alerts").find({ ruleId: rule._id }).toArray();
  assert.equal(alerts.length, 1, "one crossing, one alert");
});
