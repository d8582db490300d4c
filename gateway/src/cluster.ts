// A gateway of several processes (GATEWAY_WORKERS > 1): one Node process runs on one core, so
// workers each run the embedded broker on the same ports (node:cluster hands every accepted
// connection to one of them in turn), with their own durable queues, forwarder, command relay and
// devices. The primary only serves /healthz and /metrics for all of them, passes MQTT session
// takeovers between workers, and restarts a worker that dies.

import cluster, { type Worker } from "node:cluster";
import type { Logger } from "pino";
import type { GatewayConfig } from "./config.ts";
import { type GatewayCore, startGatewayCore } from "./gateway.ts";
import { type GatewayHealth, serveHealth } from "./health-server.ts";
import { GatewayMetrics } from "./metrics.ts";
import { close } from "./servers.ts";
import { CloudClient } from "./uplink/cloud-client.ts";
import { gatewayIdOf, UplinkReporter } from "./uplink/uplink-report.ts";

/** Messages between the primary and a worker; `id` pairs a question with its answer. */
type ClusterMessage =
  | { kind: "ready"; mqttPort: number | undefined; mqttTlsPort: number | undefined }
  | { kind: "claim"; id: number; deviceId: string }
  | { kind: "disconnect"; id: number; deviceId: string }
  | { kind: "health"; id: number }
  | { kind: "metrics"; id: number }
  | { kind: "log-level"; id: number; level: string }
  | { kind: "answer"; id: number; health?: GatewayHealth; metrics?: string };

/** A worker that does not answer within this is left out (health, metrics) or not waited for (takeover). */
const ANSWER_TIMEOUT_MS = 5_000;
const RESTART_MIN_MS = 500;
const RESTART_MAX_MS = 30_000;
/** The environment variable telling a worker its index. */
const WORKER_INDEX = "GATEWAY_WORKER_INDEX";

/** Questions to one peer over the IPC channel, answered by `answer` messages with the same id. */
class Questions {
  private next = 0;
  private readonly waiting = new Map<number, (message: ClusterMessage | undefined) => void>();

  ask(send: (message: ClusterMessage) => void, question: (id: number) => ClusterMessage) {
    const id = this.next++;
    return new Promise<ClusterMessage | undefined>((resolve) => {
      const timer = setTimeout(() => this.settle(id, undefined), ANSWER_TIMEOUT_MS);
      this.waiting.set(id, (message) => {
        clearTimeout(timer);
        resolve(message);
      });
      try {
        send(question(id));
      } catch {
        this.settle(id, undefined);
      }
    });
  }

  /** Gives an answer (or undefined: none will come) to the question waiting under this id. */
  settle(id: number, message: ClusterMessage | undefined): void {
    const waiter = this.waiting.get(id);
    this.waiting.delete(id);
    waiter?.(message);
  }

  /** The peer is gone: nothing it was asked will be answered. */
  abandon(): void {
    for (const id of [...this.waiting.keys()]) this.settle(id, undefined);
  }
}

interface WorkerSlot {
  index: number;
  worker: Worker;
  questions: Questions;
  ready: boolean;
}

export interface GatewayCluster {
  readonly mqttPort: number | undefined;
  readonly mqttTlsPort: number | undefined;
  readonly httpPort: number;
  stop(): Promise<void>;
}

/** The primary: forks the workers, waits until each listens, and serves HTTP for all of them. */
export async function startGatewayCluster(config: GatewayConfig, logger: Logger): Promise<GatewayCluster> {
  const slots: WorkerSlot[] = [];
  let stopping = false;
  const ports = { mqttPort: undefined as number | undefined, mqttTlsPort: undefined as number | undefined };
  let started = false;
  let allReady: () => void = () => undefined;
  let startFailed: (error: Error) => void = () => undefined;
  const ready = new Promise<void>((resolve, reject) => {
    allReady = resolve;
    startFailed = reject;
  });

  const send = (slot: WorkerSlot) => (message: ClusterMessage) => slot.worker.send(message);
  const others = (slot: WorkerSlot) => slots.filter((other) => other !== slot && other.ready);

  const fork = (index: number, failures: number) => {
    const worker = cluster.fork({ [WORKER_INDEX]: String(index) });
    const slot: WorkerSlot = { index, worker, questions: new Questions(), ready: false };
    slots[index] = slot;
    const startedAt = Date.now();
    worker.on("message", (message: ClusterMessage) => {
      if (message.kind === "ready") {
        slot.ready = true;
        ports.mqttPort = message.mqttPort;
        ports.mqttTlsPort = message.mqttTlsPort;
        if (slots.length === config.workers && slots.every((s) => s.ready)) allReady();
      } else if (message.kind === "answer") {
        slot.questions.settle(message.id, message);
      } else if (message.kind === "claim") {
        // Every other worker drops its connection of the device (if it has one) before this one is admitted.
        Promise.all(
          others(slot).map((other) =>
            other.questions.ask(send(other), (id) => ({ kind: "disconnect", id, deviceId: message.deviceId })),
          ),
        ).then(() => {
          if (worker.isConnected()) worker.send({ kind: "answer", id: message.id } satisfies ClusterMessage);
        });
      }
    });
    worker.on("exit", (code, signal) => {
      slot.ready = false;
      slot.questions.abandon();
      if (stopping) return;
      if (!started) {
        // A worker that cannot start (a port in use, an unreadable queue) will not the next time either.
        stopping = true;
        for (const other of slots) if (!other.worker.isDead()) other.worker.process.kill("SIGTERM");
        startFailed(new Error(`gateway worker ${index} exited during start-up (code ${code}, signal ${signal})`));
        return;
      }
      // Its devices reconnect to the other workers meanwhile; its queue waits on disk for the restart.
      const lived = Date.now() - startedAt;
      const next = lived > RESTART_MAX_MS ? 0 : failures + 1;
      const delay = Math.min(RESTART_MAX_MS, RESTART_MIN_MS * 2 ** next);
      logger.error({ worker: index, code, signal, restartInMs: delay }, "gateway worker exited; restarting it");
      setTimeout(() => {
        if (!stopping) fork(index, next);
      }, delay).unref();
    });
  };

  for (let index = 0; index < config.workers; index++) fork(index, 0);
  await ready;
  started = true;

  /** Every ready worker's answer, by worker index; a worker that does not answer is left out. */
  const ask = async (question: { kind: "health" } | { kind: "metrics" } | { kind: "log-level"; level: string }) => {
    const ready = slots.filter((slot) => slot.ready);
    const answers = await Promise.all(
      ready.map((slot) => slot.questions.ask(send(slot), (id) => ({ ...question, id }))),
    );
    const byWorker = new Map<number, Extract<ClusterMessage, { kind: "answer" }>>();
    answers.forEach((answer, i) => {
      const slot = ready[i];
      if (slot && answer?.kind === "answer") byWorker.set(slot.index, answer);
    });
    if (byWorker.size === 0) throw new Error("no gateway worker answered");
    return byWorker;
  };

  const health = async (): Promise<GatewayHealth> => {
    const answers = [...(await ask({ kind: "health" })).values()].flatMap((answer) => answer.health ?? []);
    return {
      status: "ok",
      clients: answers.reduce((total, health) => total + health.clients, 0),
      queued: answers.reduce((total, health) => total + health.queued, 0),
      oldestQueuedAgeMs: Math.max(0, ...answers.map((health) => health.oldestQueuedAgeMs)),
      workers: answers.length,
    };
  };

  // The gateway reports its uplink to the cloud as one gateway, whatever its processes: every worker's
  // queues together. The reporter reads the oldest item's age, then the depth; one round of questions
  // answers both. Without an answer it repeats the last one, never a queue emptier than it knew.
  const primaryMetrics = new GatewayMetrics();
  const uplink = { pending: 0, oldestAgeMs: 0 };
  const reporter = new UplinkReporter({
    cloud: new CloudClient({
      baseUrl: config.cloudUrl,
      gatewayKey: config.gatewayKey,
      timeoutMs: config.cloudTimeoutMs,
    }),
    forwarder: {
      get depth() {
        return uplink.pending;
      },
      async oldestAgeMs() {
        const now = await health().catch(() => undefined);
        if (now) Object.assign(uplink, { pending: now.queued, oldestAgeMs: now.oldestQueuedAgeMs });
        return uplink.oldestAgeMs;
      },
    },
    gatewayId: await gatewayIdOf(config.dataDir, config.gatewayId),
    intervalMs: config.uplinkReportIntervalMs,
    logger: logger.child({ component: "uplink-report" }),
    metrics: primaryMetrics,
  });
  reporter.start();

  const http = await serveHealth(
    config,
    {
      health,
      async renderMetrics() {
        const answers = await ask({ kind: "metrics" });
        const texts = new Map<number | "primary", string>(
          [...answers].map(([worker, answer]) => [worker, answer.metrics ?? ""]),
        );
        texts.set("primary", await primaryMetrics.render());
        return mergeWorkerMetrics(texts);
      },
      async setLogLevel(level) {
        logger.level = level;
        // A worker started later takes LOG_LEVEL from the environment, as every worker did at first.
        await ask({ kind: "log-level", level });
      },
    },
    logger.child({ component: "http" }),
  );
  logger.info(
    {
      mqtt: ports.mqttPort,
      mqtts: ports.mqttTlsPort,
      host: config.mqttHost,
      http: `${config.httpHost}:${http.port}`,
      workers: config.workers,
    },
    "gateway listening",
  );

  return {
    ...ports,
    httpPort: http.port,
    async stop() {
      stopping = true;
      await Promise.all(
        slots.map(async (slot) => {
          if (slot.worker.isDead()) return;
          const exited = new Promise((resolve) => slot.worker.once("exit", resolve));
          // Each worker stops as a gateway of one process does: broker first, then what is queued.
          slot.worker.process.kill("SIGTERM");
          await exited;
        }),
      );
      await reporter.stop();
      await close(http.server);
      logger.info("gateway stopped");
    },
  };
}

/** In a worker: runs its share of the gateway and answers the primary. */
export async function startGatewayWorker(config: GatewayConfig, logger: Logger): Promise<GatewayCore> {
  const index = Number(process.env[WORKER_INDEX]);
  if (!Number.isSafeInteger(index) || index < 0 || index >= config.workers) {
    throw new Error(`${WORKER_INDEX} must be set by the primary to 0..${config.workers - 1}`);
  }
  const toPrimary = (message: ClusterMessage) => {
    process.send?.(message);
  };
  const questions = new Questions();
  let core: GatewayCore | undefined;
  process.on("message", (message: ClusterMessage) => {
    if (message.kind === "answer") return questions.settle(message.id, message);
    if (message.kind === "log-level") {
      logger.level = message.level;
      return toPrimary({ kind: "answer", id: message.id });
    }
    if (message.kind !== "disconnect" && message.kind !== "health" && message.kind !== "metrics") return;
    const reply = (answer: { health?: GatewayHealth; metrics?: string }) =>
      toPrimary({ kind: "answer", id: message.id, ...answer });
    // Still starting: no device is connected here yet, and there is nothing to report.
    if (!core) return reply({});
    if (message.kind === "disconnect") core.disconnectDevice(message.deviceId).then(() => reply({}));
    else if (message.kind === "health") core.health().then((health) => reply({ health }));
    else core.renderMetrics().then((metrics) => reply({ metrics }));
  });
  core = await startGatewayCore(config, logger.child({ worker: index }), {
    index,
    claims: {
      async claim(deviceId) {
        await questions.ask(toPrimary, (id) => ({ kind: "claim", id, deviceId }));
      },
    },
  });
  toPrimary({ kind: "ready", mqttPort: core.mqttPort, mqttTlsPort: core.mqttTlsPort });
  return core;
}

/**
 * The workers' Prometheus texts (by worker index, and the primary's) as one: every sample gets a `worker` label so that each
 * worker's series stays distinct; sum() or max() over it gives the gateway's figure.
 */
export function mergeWorkerMetrics(texts: Map<number | "primary", string>): string {
  const families = new Map<string, { header: string[]; samples: string[] }>();
  for (const [worker, text] of texts) {
    let family: { header: string[]; samples: string[] } | undefined;
    for (const line of text.split("\n")) {
      const comment = /^# (HELP|TYPE) (\S+)/.exec(line);
      if (comment?.[2]) {
        const name = comment[2];
        family = families.get(name);
        if (!family) {
          family = { header: [], samples: [] };
          families.set(name, family);
        }
        if (!family.header.includes(line)) family.header.push(line);
        continue;
      }
      const sample = /^([^\s{]+)(?:\{(.*)\})? (.+)$/.exec(line);
      if (!sample || !family) continue;
      const labels = sample[2] ? `${sample[2]},worker="${worker}"` : `worker="${worker}"`;
      family.samples.push(`${sample[1]}{${labels}} ${sample[3]}`);
    }
  }
  const lines: string[] = [];
  for (const family of families.values()) lines.push(...family.header, ...family.samples);
  return `${lines.join("\n")}\n`;
}
