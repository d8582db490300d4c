// `kestrel`: the command line for field technicians and CI. Log in (or use an API key), upload and
// sign artifacts, manage signing keys, create, advance, pause, resume and cancel campaigns, and watch
// one with a progress bar and a per-stage table. Exit codes are for scripts (EXIT below); --json
// prints the API's answer as it is.

import { readFile } from "node:fs/promises";
import { resolve } from "node:path";
import { parseArgs } from "node:util";
import {
  ApiError,
  type Credentials,
  credentialsPath,
  KestrelApi,
  loadCredentials,
  login,
  saveCredentials,
} from "./kestrel-api.ts";

export const EXIT = Object.freeze({
  ok: 0,
  usage: 1,
  /** The API refused, or could not be reached; the message says why. */
  api: 2,
  /** `campaign watch` ended with the campaign halted. */
  halted: 3,
  /** `campaign watch` ended with the campaign cancelled. */
  cancelled: 4,
  /** `campaign watch --timeout` ran out first. */
  timeout: 5,
});

export interface CliIo {
  out(text: string): void;
  err(text: string): void;
  /** Everything on standard input (for --password-stdin). */
  stdin(): Promise<string>;
  isTty: boolean;
  /** Waits between polls of `campaign watch`. */
  sleep(ms: number): Promise<void>;
}

class UsageError extends Error {}

const USAGE = `usage: kestrel <command> [options]

  login --url URL (--email EMAIL (--password P | --password-stdin) [--organization ID] | --api-key KEY)
  upload FILE --name NAME --chip CHIP [--board BOARD] [--version SEMVER] [--kind firmware] [--notes TEXT] [--sign]
  sign ARTIFACT_ID
  artifacts [--kind KIND] [--name NAME]
  keys | keys create | keys revoke KEY_ID
  campaign create --artifact ID (--devices A,B | --tags T | --groups G)... [--name NAME]
        [--stages 1,10,50,100] [--soak SECONDS] [--window SECONDS] [--device-timeout SECONDS]
        [--failure-rate R] [--rollback-rate R] [--watchdog-rate R] [--allow-downgrade] [--manual]
  campaign list | show ID | devices ID | pause ID | resume ID | cancel ID | advance ID
  campaign watch ID [--interval SECONDS] [--timeout SECONDS]

  --json prints the API's answer. Credentials: KESTREL_URL + KESTREL_API_KEY, or the saved login
  (KESTREL_CONFIG, default ~/.config/kestrel/credentials.json).
  Exit codes: 0 done, 1 usage, 2 API error, 3 campaign halted, 4 cancelled, 5 watch timed out.
`;

const OPTIONS = {
  url: { type: "string" },
  email: { type: "string" },
  password: { type: "string" },
  "password-stdin": { type: "boolean" },
  organization: { type: "string" },
  "api-key": { type: "string" },
  name: { type: "string" },
  chip: { type: "string" },
  board: { type: "string" },
  version: { type: "string" },
  kind: { type: "string" },
  notes: { type: "string" },
  sign: { type: "boolean" },
  artifact: { type: "string" },
  devices: { type: "string", multiple: true },
  tags: { type: "string", multiple: true },
  groups: { type: "string", multiple: true },
  stages: { type: "string" },
  soak: { type: "string" },
  window: { type: "string" },
  "device-timeout": { type: "string" },
  "failure-rate": { type: "string" },
  "rollback-rate": { type: "string" },
  "watchdog-rate": { type: "string" },
  "allow-downgrade": { type: "boolean" },
  manual: { type: "boolean" },
  interval: { type: "string" },
  timeout: { type: "string" },
  json: { type: "boolean" },
  help: { type: "boolean", short: "h" },
} as const;

type Values = ReturnType<typeof parseArgs<{ options: typeof OPTIONS; allowPositionals: true }>>["values"];

interface Stage {
  index: number;
  percent: number;
  soakSeconds: number;
  devices: number;
  state: string;
  counts: Record<string, number>;
}

interface Campaign {
  campaignId: string;
  name: string;
  version: string;
  status: string;
  haltReason: string | null;
  stage: number;
  stageDoneAt: number | null;
  deviceCount: number;
  counts: Record<string, number>;
  stages: Stage[];
}

interface CampaignDevice {
  deviceId: string;
  stage: number;
  status: string;
  bytes: number | null;
  total: number | null;
  code: string | null;
  reason: string | null;
  running: string | null;
}

function required(values: Values, name: keyof Values): string {
  const value = values[name];
  if (typeof value !== "string" || value === "") throw new UsageError(`--${name} is required`);
  return value;
}

function number(values: Values, name: keyof Values, min: number, max: number): number | undefined {
  const raw = values[name];
  if (raw === undefined) return undefined;
  const value = Number(raw);
  if (typeof raw !== "string" || !Number.isFinite(value) || value < min || value > max)
    throw new UsageError(`--${name} must be a number ${min}..${max}`);
  return value;
}

function list(values: Values, name: "devices" | "tags" | "groups"): string[] {
  return (values[name] ?? [])
    .flatMap((entry) => entry.split(","))
    .map((item) => item.trim())
    .filter(Boolean);
}

function positional(positionals: string[], index: number, what: string): string {
  const value = positionals[index];
  if (!value) throw new UsageError(`${what} is required`);
  return value;
}

const COLUMNS = ["confirmed", "failed", "rolled-back", "working", "pending"] as const;
const WORKING = ["notified", "downloading", "verifying", "installed", "rebooting"];

function count(counts: Record<string, number>, column: (typeof COLUMNS)[number]): number {
  if (column === "working") return WORKING.reduce((sum, status) => sum + (counts[status] ?? 0), 0);
  return counts[column] ?? 0;
}

function table(rows: string[][]): string {
  const widths = (rows[0] ?? []).map((_, i) => Math.max(...rows.map((row) => (row[i] ?? "").length)));
  return rows
    .map((row) =>
      row
        .map((cell, i) => cell.padEnd(widths[i] ?? 0))
        .join("  ")
        .trimEnd(),
    )
    .join("\n");
}

function bar(fraction: number, width = 30): string {
  const filled = Math.round(Math.max(0, Math.min(1, fraction)) * width);
  return `[${"#".repeat(filled)}${"-".repeat(width - filled)}] ${Math.round(fraction * 100)}%`;
}

const mib = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(1)} MiB`;

/** The campaign as a technician reads it: overall progress, then one line per stage. */
export function renderCampaign(campaign: Campaign, devices: CampaignDevice[]): string {
  const finished =
    count(campaign.counts, "confirmed") + count(campaign.counts, "failed") + count(campaign.counts, "rolled-back");
  const downloading = devices.filter((device) => device.status === "downloading" && device.total);
  const bytes = downloading.reduce((sum, device) => sum + (device.bytes ?? 0), 0);
  const total = downloading.reduce((sum, device) => sum + (device.total ?? 0), 0);
  const lines = [
    `campaign ${campaign.campaignId} "${campaign.name}" → ${campaign.version}: ${campaign.status}, stage ${campaign.stage + 1}/${campaign.stages.length}`,
    `devices   ${bar(campaign.deviceCount === 0 ? 1 : finished / campaign.deviceCount)} (${finished}/${campaign.deviceCount} finished)`,
  ];
  if (downloading.length > 0)
    lines.push(
      `download  ${bar(total === 0 ? 0 : bytes / total)} (${downloading.length} devices, ${mib(bytes)} of ${mib(total)})`,
    );
  if (campaign.haltReason) lines.push(`halted: ${campaign.haltReason}`);
  lines.push(
    "",
    table([
      ["stage", "%", "devices", "state", ...COLUMNS],
      ...campaign.stages.map((stage) => [
        String(stage.index + 1),
        String(stage.percent),
        String(stage.devices),
        stage.state,
        ...COLUMNS.map((column) => String(count(stage.counts, column))),
      ]),
    ]),
  );
  const failures = devices.filter((device) => device.status === "failed" || device.status === "rolled-back");
  if (failures.length > 0) {
    lines.push("");
    for (const device of failures.slice(0, 10))
      lines.push(`${device.deviceId}: ${device.status} ${device.code ?? ""} ${device.reason ?? ""}`.trimEnd());
    if (failures.length > 10) lines.push(`… and ${failures.length - 10} more`);
  }
  return lines.join("\n");
}

async function api(env: NodeJS.ProcessEnv): Promise<KestrelApi> {
  return new KestrelApi(await loadCredentials(env));
}

async function doLogin(values: Values, env: NodeJS.ProcessEnv, io: CliIo): Promise<number> {
  const url = required(values, "url");
  let credentials: Credentials;
  if (values["api-key"]) {
    credentials = { url: url.replace(/\/+$/, ""), token: values["api-key"] };
    // Checked now rather than at the first real command.
    await new KestrelApi(credentials).request("GET", "/api/org");
  } else {
    const email = required(values, "email");
    const password = values["password-stdin"] ? (await io.stdin()).replace(/\r?\n$/, "") : values.password;
    if (!password) throw new UsageError("give --password or --password-stdin");
    credentials = await login(url, email, password, values.organization);
  }
  const path = credentialsPath(env);
  await saveCredentials(path, credentials);
  io.out(`logged in to ${credentials.url} (saved in ${path})\n`);
  return EXIT.ok;
}

interface Artifact {
  artifactId: string;
  kind: string;
  name: string;
  version: string;
  size: number;
  sha256: string;
  target: { chip: string; board: string };
  signatures: Array<{ keyId: string }>;
}

function artifactLine(artifact: Artifact): string {
  const signed =
    artifact.signatures.length > 0 ? `signed by ${artifact.signatures.map((s) => s.keyId).join(",")}` : "unsigned";
  return `${artifact.artifactId}  ${artifact.kind} ${artifact.name} ${artifact.version}  ${artifact.target.chip}/${artifact.target.board}  ${artifact.size} bytes  sha256 ${artifact.sha256}  ${signed}`;
}

async function upload(values: Values, positionals: string[], env: NodeJS.ProcessEnv, io: CliIo): Promise<number> {
  // Relative to where the user ran it, also through npm exec (which changes the directory).
  const file = resolve(env.INIT_CWD ?? process.cwd(), positional(positionals, 1, "the artifact FILE"));
  const query = new URLSearchParams({
    kind: values.kind ?? "firmware",
    name: required(values, "name"),
    chip: required(values, "chip"),
    board: values.board ?? "*",
  });
  if (values.version) query.set("version", values.version);
  if (values.notes) query.set("notes", values.notes);
  const client = await api(env);
  const artifact = await client.request<Artifact>("POST", `/api/artifacts?${query}`, {
    bytes: new Uint8Array(await readFile(file)),
  });
  if (values.sign) await client.request("POST", `/api/artifacts/${artifact.artifactId}/signatures`);
  const shown = values.sign ? await client.request<Artifact>("GET", `/api/artifacts/${artifact.artifactId}`) : artifact;
  io.out(values.json ? `${JSON.stringify(shown)}\n` : `${artifactLine(shown)}\n`);
  return EXIT.ok;
}

function campaignBody(values: Values): Record<string, unknown> {
  const target = { devices: list(values, "devices"), tags: list(values, "tags"), groups: list(values, "groups") };
  if (target.devices.length + target.tags.length + target.groups.length === 0)
    throw new UsageError("name the devices: --devices, --tags or --groups");
  const body: Record<string, unknown> = {
    name: values.name ?? `rollout ${new Date().toISOString().slice(0, 16)}`,
    artifactId: required(values, "artifact"),
    target,
  };
  const soak = number(values, "soak", 0, 30 * 86_400) ?? 3600;
  if (values.stages !== undefined) {
    const percents = values.stages.split(",").map(Number);
    if (percents.some((percent) => !Number.isFinite(percent)))
      throw new UsageError("--stages: comma-separated percentages");
    body.stages = percents.map((percent, i) => ({ percent, soakSeconds: i === percents.length - 1 ? 0 : soak }));
  } else if (values.soak !== undefined) {
    body.stages = [1, 10, 50, 100].map((percent) => ({ percent, soakSeconds: percent === 100 ? 0 : soak }));
  }
  const window = number(values, "window", 0, 86_400);
  if (window !== undefined) body.startWindowSeconds = window;
  const timeout = number(values, "device-timeout", 60, 30 * 86_400);
  if (timeout !== undefined) body.deviceTimeoutSeconds = timeout;
  const thresholds: Record<string, number> = {};
  for (const [option, field] of [
    ["failure-rate", "failureRate"],
    ["rollback-rate", "rollbackRate"],
    ["watchdog-rate", "watchdogRate"],
  ] as const) {
    const rate = number(values, option, 0, 1);
    if (rate !== undefined) thresholds[field] = rate;
  }
  if (Object.keys(thresholds).length > 0) body.thresholds = thresholds;
  if (values["allow-downgrade"]) body.allowDowngrade = true;
  if (values.manual) body.autoAdvance = false;
  return body;
}

async function show(
  client: KestrelApi,
  campaignId: string,
): Promise<{ campaign: Campaign; devices: CampaignDevice[] }> {
  const [campaign, devices] = await Promise.all([
    client.request<Campaign>("GET", `/api/campaigns/${campaignId}`),
    client.request<{ items: CampaignDevice[] }>("GET", `/api/campaigns/${campaignId}/devices`),
  ]);
  return { campaign, devices: devices.items };
}

/** Polls until the campaign is over; redraws in place on a terminal, prints changes otherwise. */
async function watch(values: Values, client: KestrelApi, campaignId: string, io: CliIo): Promise<number> {
  const intervalMs = (number(values, "interval", 0.1, 3600) ?? 2) * 1000;
  const timeoutS = number(values, "timeout", 1, 7 * 86_400);
  const deadline = timeoutS === undefined ? Number.POSITIVE_INFINITY : Date.now() + timeoutS * 1000;
  let previous = "";
  let drawnLines = 0;
  for (;;) {
    const { campaign, devices } = await show(client, campaignId);
    const text = renderCampaign(campaign, devices);
    if (text !== previous) {
      // Move the cursor back over the previous frame and clear it.
      if (io.isTty && drawnLines > 0) io.out(`\x1b[${drawnLines}F\x1b[J`);
      io.out(`${text}\n${io.isTty ? "" : "\n"}`);
      drawnLines = text.split("\n").length;
      previous = text;
    }
    if (campaign.status === "completed") return EXIT.ok;
    if (campaign.status === "halted") return EXIT.halted;
    if (campaign.status === "cancelled") return EXIT.cancelled;
    if (Date.now() >= deadline) {
      io.err(`timed out watching campaign ${campaignId} (${campaign.status})\n`);
      return EXIT.timeout;
    }
    await io.sleep(intervalMs);
  }
}

async function campaignCommand(
  values: Values,
  positionals: string[],
  env: NodeJS.ProcessEnv,
  io: CliIo,
): Promise<number> {
  const action = positional(
    positionals,
    1,
    "a campaign command (create, list, show, watch, pause, resume, cancel, advance)",
  );
  // Usage is checked before credentials: a wrong command line says so even when not logged in.
  const body = action === "create" ? campaignBody(values) : undefined;
  const client = await api(env);
  const print = (value: unknown, text: () => string) =>
    io.out(values.json ? `${JSON.stringify(value)}\n` : `${text()}\n`);
  switch (action) {
    case "create": {
      const campaign = await client.request<Campaign>("POST", "/api/campaigns", { json: body });
      print(campaign, () => renderCampaign(campaign, []));
      return EXIT.ok;
    }
    case "list": {
      const { items } = await client.request<{ items: Campaign[] }>("GET", "/api/campaigns");
      print(items, () =>
        table([
          ["campaign", "name", "version", "status", "stage", "devices", "confirmed"],
          ...items.map((c) => [
            c.campaignId,
            c.name,
            c.version,
            c.status,
            `${c.stage + 1}/${c.stages.length}`,
            String(c.deviceCount),
            String(c.counts.confirmed ?? 0),
          ]),
        ]),
      );
      return EXIT.ok;
    }
    case "show": {
      const { campaign, devices } = await show(client, positional(positionals, 2, "the campaign ID"));
      print(campaign, () => renderCampaign(campaign, devices));
      return EXIT.ok;
    }
    case "devices": {
      const { devices } = await show(client, positional(positionals, 2, "the campaign ID"));
      print(devices, () =>
        table([
          ["device", "stage", "status", "progress", "running", "why"],
          ...devices.map((d) => [
            d.deviceId,
            String(d.stage + 1),
            d.status,
            d.total ? `${Math.round(((d.bytes ?? 0) * 100) / d.total)}%` : "",
            d.running ?? "",
            [d.code, d.reason].filter(Boolean).join(": "),
          ]),
        ]),
      );
      return EXIT.ok;
    }
    case "watch":
      return watch(values, client, positional(positionals, 2, "the campaign ID"), io);
    case "pause":
    case "resume":
    case "cancel":
    case "advance": {
      const campaignId = positional(positionals, 2, "the campaign ID");
      const campaign = await client.request<Campaign>("POST", `/api/campaigns/${campaignId}/${action}`);
      print(
        campaign,
        () =>
          `campaign ${campaign.campaignId}: ${campaign.status}, stage ${campaign.stage + 1}/${campaign.stages.length}`,
      );
      return EXIT.ok;
    }
    default:
      throw new UsageError(`unknown campaign command ${action}`);
  }
}

async function keysCommand(values: Values, positionals: string[], env: NodeJS.ProcessEnv, io: CliIo): Promise<number> {
  const client = await api(env);
  const action = positionals[1] ?? "list";
  interface Key {
    keyId: string;
    status: string;
    publicKey: string;
  }
  if (action === "list") {
    const { items } = await client.request<{ items: Key[] }>("GET", "/api/signing/keys");
    io.out(
      values.json
        ? `${JSON.stringify(items)}\n`
        : `${items.map((k) => `${k.keyId}  ${k.status}  ${k.publicKey}`).join("\n")}\n`,
    );
    return EXIT.ok;
  }
  if (action === "create") {
    const created = await client.request<{ key: Key; record: unknown }>("POST", "/api/signing/keys");
    io.out(
      values.json
        ? `${JSON.stringify(created)}\n`
        : `${created.key.keyId} active${created.record ? " (rotation: devices trust it once they get the record)" : ""}\n` +
            `provision devices with otaKeys=${created.key.keyId}:${created.key.publicKey}\n`,
    );
    return EXIT.ok;
  }
  if (action === "revoke") {
    const keyId = positional(positionals, 2, "the KEY_ID");
    const revoked = await client.request("POST", `/api/signing/keys/${keyId}/revoke`);
    io.out(values.json ? `${JSON.stringify(revoked)}\n` : `${keyId} revoked\n`);
    return EXIT.ok;
  }
  throw new UsageError(`unknown keys command ${action}`);
}

/** Runs one command line; the exit code says how it went. */
export async function runCli(args: string[], env: NodeJS.ProcessEnv, io: CliIo): Promise<number> {
  try {
    const { values, positionals } = parseArgs({ args, options: OPTIONS, allowPositionals: true, strict: true });
    const command = positionals[0];
    if (values.help || command === undefined || command === "help") {
      io.out(USAGE);
      return values.help || command === "help" ? EXIT.ok : EXIT.usage;
    }
    switch (command) {
      case "login":
        return await doLogin(values, env, io);
      case "upload":
        return await upload(values, positionals, env, io);
      case "sign": {
        const artifactId = positional(positionals, 1, "the ARTIFACT_ID");
        const client = await api(env);
        await client.request("POST", `/api/artifacts/${artifactId}/signatures`);
        const artifact = await client.request<Artifact>("GET", `/api/artifacts/${artifactId}`);
        io.out(values.json ? `${JSON.stringify(artifact)}\n` : `${artifactLine(artifact)}\n`);
        return EXIT.ok;
      }
      case "artifacts": {
        const query = new URLSearchParams();
        if (values.kind) query.set("kind", values.kind);
        if (values.name) query.set("name", values.name);
        const { items } = await (await api(env)).request<{ items: Artifact[] }>("GET", `/api/artifacts?${query}`);
        io.out(values.json ? `${JSON.stringify(items)}\n` : `${items.map(artifactLine).join("\n")}\n`);
        return EXIT.ok;
      }
      case "keys":
        return await keysCommand(values, positionals, env, io);
      case "campaign":
        return await campaignCommand(values, positionals, env, io);
      default:
        throw new UsageError(`unknown command ${command}`);
    }
  } catch (error) {
    if (error instanceof UsageError || (error as { code?: string }).code?.startsWith("ERR_PARSE_ARGS")) {
      io.err(`kestrel: ${(error as Error).message}\n\n${USAGE}`);
      return EXIT.usage;
    }
    if (error instanceof ApiError) {
      io.err(`kestrel: ${error.message}${error.status ? ` (${error.status} ${error.code})` : ""}\n`);
      return EXIT.api;
    }
    io.err(`kestrel: ${(error as Error).message}\n`);
    return EXIT.api;
  }
}
