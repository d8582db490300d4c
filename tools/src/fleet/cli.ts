// `npm run fleet -w tools -- --devices=1000 --duration-s=600`: the fleet load
// against a platform already running on this machine (`make run`), whose
// admin credentials and CA it reads from the data dir unless given. Prints the
// report and the machine load; exits 1 when an acknowledged sample is missing
// or stored twice.

import { readFileSync } from "node:fs";
import { loadavg } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { FleetError, type FleetOptions, type FleetReport, runFleet } from "./fleet.ts";
import { formatSummary } from "./stats.ts";

const HELP = `fleet load: N devices over MQTT/TLS with their own tokens, then an exactly-once check

  --devices=N            devices (default 100, at most 10,000)
  --batch=N              samples per batch (default 5, at most 45)
  --interval-ms=N        one batch per device every N ms (default 5000)
  --duration-s=N         publishing time (default 60, at most 3600)
  --connect-rate=N       connections opened per second (default 100)
  --prefix=ID            device ids are <prefix>-<n> (default fleet)
  --settle-s=N           the longest wait for the cloud to apply everything at the end (default 300)
  --cloud-url=URL        default http://127.0.0.1:8080
  --mqtt-url=URL         default mqtts://127.0.0.1:8883
  --data-dir=DIR         where make run keeps credentials.json and pki/ (default .data)
  --ca=FILE --email=E --password=P   instead of the data dir's
  --json                 print the report as JSON
`;

export function printReport(report: FleetReport, write: (line: string) => void): void {
  const load = loadavg()
    .map((value) => value.toFixed(2))
    .join(" ");
  write(`devices ${report.connected}/${report.devices} connected`);
  write(`batches ${report.batchesAcked} acknowledged of ${report.batchesSent} sent`);
  write(`samples ${report.samplesAcked} acknowledged, ${report.ackedPerSecond.toFixed(0)}/s`);
  write(
    `stored  missing ${report.missing}, duplicated ${report.duplicated}, counter mismatches ${report.counterMismatches} (resent and recognised: ${report.resent})`,
  );
  write(`ack latency      ${formatSummary(report.ackLatency)}`);
  write(`apply lag        ${formatSummary(report.applyLag)}`);
  write(`  first third    ${formatSummary(report.applyLagThirds[0])}`);
  write(`  last third     ${formatSummary(report.applyLagThirds[1])}`);
  write(`drained          ${report.drainSeconds.toFixed(1)} s after the last publish`);
  for (const [name, summary] of Object.entries(report.api)) {
    write(`api ${name.padEnd(12)} ${formatSummary(summary)}, ${summary.failures} failed`);
  }
  write(`publish slip     ${formatSummary(report.publishSlip)}`);
  write(
    `generator        CPU ${report.generator.cpuPercent.toFixed(0)}% of a core, event-loop delay p99 ${report.generator.eventLoopDelayP99Ms.toFixed(0)} ms`,
  );
  write(`load average     ${load}`);
}

function readJson(path: string): { admin?: { email: string; password: string } } {
  try {
    return JSON.parse(readFileSync(path, "utf8"));
  } catch {
    throw new FleetError(`cannot read ${path}: start the platform first (make run), or give --email and --password`);
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      devices: { type: "string", default: "100" },
      batch: { type: "string", default: "5" },
      "interval-ms": { type: "string", default: "5000" },
      "duration-s": { type: "string", default: "60" },
      "connect-rate": { type: "string", default: "100" },
      prefix: { type: "string", default: "fleet" },
      "settle-s": { type: "string", default: "300" },
      "cloud-url": { type: "string", default: "http://127.0.0.1:8080" },
      "mqtt-url": { type: "string", default: "mqtts://127.0.0.1:8883" },
      "data-dir": { type: "string", default: join(import.meta.dirname, "..", "..", "..", ".data") },
      ca: { type: "string" },
      email: { type: "string" },
      password: { type: "string" },
      json: { type: "boolean", default: false },
      help: { type: "boolean", default: false },
    },
  });
  if (values.help) {
    process.stdout.write(HELP);
    return;
  }
  const dataDir = values["data-dir"];
  const admin =
    values.email && values.password
      ? { email: values.email, password: values.password }
      : readJson(join(dataDir, "credentials.json")).admin;
  if (!admin) throw new FleetError("no admin credentials: give --email and --password");
  const mqttUrl = values["mqtt-url"];
  const ca = mqttUrl.startsWith("mqtts:")
    ? readFileSync(values.ca ?? join(dataDir, "pki", "ca.pem"), "utf8")
    : undefined;
  const options: FleetOptions = {
    cloudUrl: values["cloud-url"],
    mqttUrl,
    ca,
    admin,
    devices: Number(values.devices),
    samplesPerBatch: Number(values.batch),
    intervalMs: Number(values["interval-ms"]),
    durationMs: Number(values["duration-s"]) * 1000,
    connectPerSecond: Number(values["connect-rate"]),
    idPrefix: values.prefix,
    settleTimeoutMs: Number(values["settle-s"]) * 1000,
    log: (line) => process.stderr.write(`fleet: ${line}\n`),
  };
  const report = await runFleet(options);
  if (values.json) process.stdout.write(`${JSON.stringify({ ...report, loadavg: loadavg() }, null, 2)}\n`);
  else printReport(report, (line) => process.stdout.write(`${line}\n`));
  if (report.missing > 0 || report.duplicated > 0 || report.counterMismatches > 0) process.exitCode = 1;
}

if (import.meta.main) {
  main().catch((error: unknown) => {
    process.stderr.write(`fleet: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exit(error instanceof FleetError ? 2 : 1);
  });
}
