// Alerts of the caller's organization: rules (threshold with hold and hysteresis, rate of change,
// offline, safe mode, watchdog resets, system metrics) scoped to a device, tag, group or all
// devices; alerts firing → acknowledged → resolved with who and when, kept as history; silences.
// Wires the evaluators: sample rules as the telemetry journal is applied, the rest in the engine.

import type { FastifyInstance } from "fastify";
import type { Db } from "mongodb";
import { type Principal, principalOf } from "../auth/access.ts";
import { Problem, problemResponses } from "../http/problem.ts";
import type { CloudMetrics } from "../metrics/cloud-metrics.ts";
import { TelemetryStore } from "../telemetry/telemetry-store.ts";
import { AlertEngine, type AlertEngineOptions } from "./alert-engine.ts";
import {
  type AlertCondition,
  type AlertConditionInput,
  type AlertListQuery,
  type AlertView,
  acknowledgeBodySchema,
  alertListQuerySchema,
  alertListSchema,
  alertParamsSchema,
  alertViewSchema,
  type RuleBody,
  type RuleView,
  ruleBodySchema,
  ruleListSchema,
  ruleParamsSchema,
  ruleUpdateSchema,
  ruleViewSchema,
  SAMPLE_KINDS,
  type SilenceBody,
  type SilenceView,
  silenceBodySchema,
  silenceListSchema,
  silenceParamsSchema,
  silenceViewSchema,
} from "./alert-schema.ts";
import { AlertRecorder, AlertStore } from "./alert-store.ts";
import { levelProblem } from "./conditions.ts";
import { MAX_RULES, type RuleDoc, RuleStore, type SilenceDoc, silenceApplies } from "./rule-store.ts";
import { SampleEvaluator } from "./sample-evaluator.ts";

export interface AlertsOptions {
  db: Db;
  metrics: CloudMetrics;
  /** Engine timing (tests shorten it). */
  engine?: Pick<AlertEngineOptions, "intervalMs" | "sweepMs">;
}

const DEFAULT_PAGE = 50;

function actorOf(principal: Principal): string {
  if (principal.kind === "user") return principal.email;
  if (principal.kind === "apiKey") return `key:${principal.keyId}`;
  return "gateway";
}

function ruleNotFound(ruleId: string): Problem {
  return new Problem(404, "rule_not_found", `no alert rule ${ruleId} in this organization`);
}

function alertNotFound(alertId: string): Problem {
  return new Problem(404, "alert_not_found", `no alert ${alertId} in this organization`);
}

function ruleProblem(rule: Pick<RuleDoc, "condition">): string | undefined {
  const condition = rule.condition;
  if (condition.kind === "threshold" || condition.kind === "system") return levelProblem(condition);
  if (
    condition.kind === "rate" &&
    condition.clearPerMinute !== undefined &&
    condition.clearPerMinute > condition.perMinute
  ) {
    return "clearPerMinute must not be above perMinute";
  }
  return undefined;
}

/** The condition with its defaults filled in, as stored (a rate rule: either direction over a minute). */
function withDefaults(condition: AlertConditionInput): AlertCondition {
  if (condition.kind !== "rate") return condition;
  return { ...condition, direction: condition.direction ?? "either", windowSeconds: condition.windowSeconds ?? 60 };
}

function toRuleView(doc: RuleDoc): RuleView {
  return {
    ruleId: doc._id,
    name: doc.name,
    severity: doc.severity,
    enabled: doc.enabled,
    scope: doc.scope,
    condition: doc.condition,
    createdAt: doc.createdAt,
    updatedAt: doc.updatedAt,
  };
}

function toSilenceView(doc: SilenceDoc, now: number): SilenceView {
  return {
    silenceId: doc._id,
    ruleId: doc.ruleId,
    deviceId: doc.deviceId,
    startsAt: doc.startsAt,
    endsAt: doc.endsAt,
    comment: doc.comment,
    createdBy: doc.createdBy,
    createdAt: doc.createdAt,
    active: silenceApplies(doc, doc.ruleId ?? "", doc.deviceId, now),
  };
}

function encodeCursor(view: AlertView): string {
  return Buffer.from(JSON.stringify([view.firedAt, view.alertId])).toString("base64url");
}

function decodeCursor(cursor: string): [number, string] {
  try {
    const [firedAt, id] = JSON.parse(Buffer.from(cursor, "base64url").toString("utf8")) as unknown[];
    if (Number.isSafeInteger(firedAt) && typeof id === "string") return [firedAt as number, id];
  } catch {
    // Answered below.
  }
  throw new Problem(400, "invalid_cursor", "cursor is not one this API gave");
}

export async function alertsPlugin(app: FastifyInstance, options: AlertsOptions): Promise<void> {
  const rules = new RuleStore(options.db);
  const alerts = new AlertStore(options.db);
  const recorder = new AlertRecorder(options.db, rules, options.metrics);
  const log = app.log.child({ component: "alerts" });

  // Streaming: threshold and rate rules are evaluated as each apply pass stores its samples.
  const evaluator = new SampleEvaluator(options.db, rules, recorder, options.metrics, log);
  const unobserve = TelemetryStore.observe(options.db, async (pass) => {
    for (const at of pass.journalledAt) options.metrics.applyLag.observe(Math.max(0, Date.now() - at) / 1000);
    // An evaluation failure must not hold the telemetry pipeline back: logged and counted, not thrown.
    await evaluator.evaluate(pass).catch((error: unknown) => log.error({ err: error }, "alert evaluation failed"));
  });
  // A crossing must not wait for a burst of ingest to end: organizations with sample rules have their passes at once.
  const unprompt = TelemetryStore.promptWhen(options.db, async (tenantIds) => {
    for (const tenantId of tenantIds) {
      const enabled = await rules.enabled(tenantId);
      if (enabled.some((rule) => SAMPLE_KINDS.includes(rule.condition.kind))) return true;
    }
    return false;
  });
  const engine = new AlertEngine(options.db, log, { rules, recorder, metrics: options.metrics, ...options.engine });
  app.addHook("onReady", async () => engine.start());
  app.addHook("onClose", async () => {
    unobserve();
    unprompt();
    await engine.stop();
  });

  app.post<{ Body: RuleBody }>(
    "/api/alerts/rules",
    {
      config: { permission: "alerts:write" },
      schema: {
        summary: "Add an alert rule",
        body: ruleBodySchema,
        response: { 201: { ...ruleViewSchema, description: "The rule." }, ...problemResponses(400, 401, 403, 409) },
      },
    },
    async (request, reply): Promise<RuleView> => {
      const tenantId = principalOf(request).tenantId;
      const condition = withDefaults(request.body.condition);
      const problem = ruleProblem({ condition });
      if (problem) throw new Problem(400, "invalid_rule", problem);
      if ((await rules.count(tenantId)) >= MAX_RULES) {
        throw new Problem(409, "too_many_rules", `an organization has at most ${MAX_RULES} alert rules`);
      }
      const now = Date.now();
      const doc = await rules.create({
        tenantId,
        name: request.body.name,
        severity: request.body.severity ?? "warning",
        enabled: request.body.enabled ?? true,
        scope: request.body.scope ?? { type: "all" },
        condition,
        createdAt: now,
        updatedAt: now,
      });
      reply.code(201);
      return toRuleView(doc);
    },
  );

  app.get(
    "/api/alerts/rules",
    {
      config: { permission: "alerts:read" },
      schema: {
        summary: "List the organization's alert rules",
        response: { 200: { ...ruleListSchema, description: "The rules." }, ...problemResponses(401, 403) },
      },
    },
    async (request) => ({ items: (await rules.list(principalOf(request).tenantId)).map(toRuleView) }),
  );

  app.get<{ Params: { ruleId: string } }>(
    "/api/alerts/rules/:ruleId",
    {
      config: { permission: "alerts:read" },
      schema: {
        summary: "One alert rule",
        params: ruleParamsSchema,
        response: { 200: { ...ruleViewSchema, description: "The rule." }, ...problemResponses(401, 403, 404) },
      },
    },
    async (request): Promise<RuleView> => {
      const doc = await rules.find(principalOf(request).tenantId, request.params.ruleId);
      if (!doc) throw ruleNotFound(request.params.ruleId);
      return toRuleView(doc);
    },
  );

  app.patch<{ Params: { ruleId: string }; Body: Partial<RuleBody> }>(
    "/api/alerts/rules/:ruleId",
    {
      config: { permission: "alerts:write" },
      schema: {
        summary: "Change a rule (a changed condition applies from the next evaluation on)",
        params: ruleParamsSchema,
        body: ruleUpdateSchema,
        response: {
          200: { ...ruleViewSchema, description: "The rule as changed." },
          ...problemResponses(400, 401, 403, 404),
        },
      },
    },
    async (request): Promise<RuleView> => {
      const doc = await rules.find(principalOf(request).tenantId, request.params.ruleId);
      if (!doc) throw ruleNotFound(request.params.ruleId);
      const { condition, ...fields } = request.body;
      const changed: RuleDoc = {
        ...doc,
        ...fields,
        ...(condition && { condition: withDefaults(condition) }),
        updatedAt: Date.now(),
      };
      const problem = ruleProblem(changed);
      if (problem) throw new Problem(400, "invalid_rule", problem);
      await rules.replace(changed);
      return toRuleView(changed);
    },
  );

  app.delete<{ Params: { ruleId: string } }>(
    "/api/alerts/rules/:ruleId",
    {
      config: { permission: "alerts:write" },
      schema: {
        summary: "Delete a rule (its alerts stay in the history)",
        params: ruleParamsSchema,
        response: { 204: { description: "Deleted.", type: "null" }, ...problemResponses(401, 403, 404) },
      },
    },
    async (request, reply) => {
      if (!(await rules.remove(principalOf(request).tenantId, request.params.ruleId))) {
        throw ruleNotFound(request.params.ruleId);
      }
      return reply.code(204).send();
    },
  );

  app.get<{ Querystring: AlertListQuery }>(
    "/api/alerts",
    {
      config: { permission: "alerts:read" },
      schema: {
        summary: "Alerts, newest first: open (firing or acknowledged) or resolved, by rule or device",
        querystring: alertListQuerySchema,
        response: {
          200: { ...alertListSchema, description: "One page; pass cursor back for the next." },
          ...problemResponses(400, 401, 403),
        },
      },
    },
    async (request) => {
      const { status, ruleId, deviceId, cursor } = request.query;
      const limit = Number(request.query.limit ?? DEFAULT_PAGE);
      if (limit < 1 || limit > 200) throw new Problem(400, "invalid_request", "limit must be 1..200");
      const page = await alerts.list(principalOf(request).tenantId, {
        limit,
        ...(status && { status }),
        ...(ruleId && { ruleId }),
        ...(deviceId && { deviceId }),
        ...(cursor && { before: decodeCursor(cursor) }),
      });
      const last = page.items.at(-1);
      return { items: page.items, cursor: page.more && last ? encodeCursor(last) : null };
    },
  );

  app.get<{ Params: { alertId: string } }>(
    "/api/alerts/:alertId",
    {
      config: { permission: "alerts:read" },
      schema: {
        summary: "One alert with its history (fired, acknowledged, resolved: who and when)",
        params: alertParamsSchema,
        response: { 200: { ...alertViewSchema, description: "The alert." }, ...problemResponses(401, 403, 404) },
      },
    },
    async (request): Promise<AlertView> => {
      const view = await alerts.view(principalOf(request).tenantId, request.params.alertId);
      if (!view) throw alertNotFound(request.params.alertId);
      return view;
    },
  );

  app.post<{ Params: { alertId: string }; Body: { note?: string } }>(
    "/api/alerts/:alertId/acknowledge",
    {
      config: { permission: "alerts:write" },
      schema: {
        summary: "Acknowledge an open alert (once: a later acknowledgement is 409)",
        params: alertParamsSchema,
        body: acknowledgeBodySchema,
        response: {
          200: { ...alertViewSchema, description: "The alert, acknowledged." },
          ...problemResponses(400, 401, 403, 404, 409),
        },
      },
    },
    async (request): Promise<AlertView> => {
      const principal = principalOf(request);
      const { alertId } = request.params;
      const view = await alerts.view(principal.tenantId, alertId);
      if (!view) throw alertNotFound(alertId);
      if (view.status === "resolved") throw new Problem(409, "alert_resolved", `alert ${alertId} is resolved already`);
      if (
        !(await alerts.acknowledge(principal.tenantId, alertId, actorOf(principal), Date.now(), request.body?.note))
      ) {
        throw new Problem(409, "alert_acknowledged", `alert ${alertId} was acknowledged already`);
      }
      return (await alerts.view(principal.tenantId, alertId)) ?? view;
    },
  );

  app.post<{ Body: SilenceBody }>(
    "/api/alerts/silences",
    {
      config: { permission: "alerts:write" },
      schema: {
        summary: "Mute the notifications of a rule, a device, or both, for a period",
        body: silenceBodySchema,
        response: {
          201: { ...silenceViewSchema, description: "The silence." },
          ...problemResponses(400, 401, 403, 404),
        },
      },
    },
    async (request, reply): Promise<SilenceView> => {
      const principal = principalOf(request);
      const now = Date.now();
      const { ruleId, deviceId, endsAt, comment } = request.body;
      const startsAt = request.body.startsAt ?? now;
      if (endsAt <= startsAt || endsAt <= now)
        throw new Problem(400, "invalid_silence", "endsAt must be after startsAt and now");
      if (ruleId && !(await rules.find(principal.tenantId, ruleId))) throw ruleNotFound(ruleId);
      const doc = await rules.createSilence({
        tenantId: principal.tenantId,
        ruleId: ruleId ?? null,
        deviceId: deviceId ?? null,
        startsAt,
        endsAt,
        comment: comment ?? "",
        createdBy: actorOf(principal),
        createdAt: now,
      });
      reply.code(201);
      return toSilenceView(doc, now);
    },
  );

  app.get(
    "/api/alerts/silences",
    {
      config: { permission: "alerts:read" },
      schema: {
        summary: "Silences not yet over",
        response: { 200: { ...silenceListSchema, description: "The silences." }, ...problemResponses(401, 403) },
      },
    },
    async (request) => {
      const now = Date.now();
      return { items: (await rules.listSilences(principalOf(request).tenantId)).map((doc) => toSilenceView(doc, now)) };
    },
  );

  app.delete<{ Params: { silenceId: string } }>(
    "/api/alerts/silences/:silenceId",
    {
      config: { permission: "alerts:write" },
      schema: {
        summary: "End a silence",
        params: silenceParamsSchema,
        response: { 204: { description: "Deleted.", type: "null" }, ...problemResponses(401, 403, 404) },
      },
    },
    async (request, reply) => {
      const { silenceId } = request.params;
      if (!(await rules.removeSilence(principalOf(request).tenantId, silenceId))) {
        throw new Problem(404, "silence_not_found", `no silence ${silenceId} in this organization`);
      }
      return reply.code(204).send();
    },
  );
}
