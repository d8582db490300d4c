// `npm run bootstrap -w cloud -- --devices 3 --out .data/credentials.json`:
// creates or refreshes a tenant with its admin, gateway key and devices, and
// writes the plaintext credentials to a file only its owner can read.

import { chmod, mkdir, writeFile } from "node:fs/promises";
import { dirname, resolve } from "node:path";
import { parseArgs } from "node:util";
import { pino } from "pino";
import { ConfigError, loadConfig, REPO_ROOT } from "./config.ts";
import { openDatabase } from "./storage/open.ts";
import { BootstrapError, bootstrap, type Credentials } from "./tenants/bootstrap.ts";

const USAGE = `usage: npm run bootstrap -w cloud -- [--devices N] [--device-prefix sim-] [--tenant Local]
       [--email admin@kestrel.local] [--out .data/credentials.json]
The admin password is taken from ADMIN_PASSWORD, or generated.`;

function fail(message: string): never {
  process.stderr.write(`bootstrap: ${message}\n${USAGE}\n`);
  process.exit(2);
}

function parseCommandLine() {
  try {
    return parseArgs({
      options: {
        devices: { type: "string", default: "3" },
        "device-prefix": { type: "string", default: "sim-" },
        tenant: { type: "string", default: "Local" },
        email: { type: "string", default: "admin@kestrel.local" },
        out: { type: "string", default: ".data/credentials.json" },
      },
      strict: true,
    }).values;
  } catch (error) {
    fail(error instanceof Error ? error.message : String(error));
  }
}

const args = parseCommandLine();

const count = Number(args.devices);
if (!Number.isInteger(count) || count < 0 || count > 10_000) fail("--devices must be an integer 0..10000");
const deviceIds = Array.from({ length: count }, (_, i) => `${args["device-prefix"]}${String(i + 1).padStart(3, "0")}`);
// Relative paths are taken from the repository root, where `npm run -w` does not run.
const out = resolve(REPO_ROOT, args.out);

let config: ReturnType<typeof loadConfig>;
try {
  config = loadConfig();
} catch (error) {
  if (error instanceof ConfigError) fail(error.message);
  throw error;
}

// A one-shot command: only warnings unless a more verbose level was asked for.
const logger = pino({ level: config.logLevel === "info" ? "warn" : config.logLevel });
const database = await openDatabase(config, logger);
let credentials: Credentials;
try {
  credentials = await bootstrap(database.db, {
    tenantName: args.tenant,
    adminEmail: args.email,
    adminPassword: process.env.ADMIN_PASSWORD || undefined,
    deviceIds,
  });
} catch (error) {
  await database.close();
  if (error instanceof BootstrapError) fail(error.message);
  throw error;
}
await database.close();

await mkdir(dirname(out), { recursive: true });
await writeFile(out, `${JSON.stringify(credentials, null, 2)}\n`, { mode: 0o600 });
// writeFile's mode applies only to a new file.
await chmod(out, 0o600);
process.stdout.write(`bootstrap: tenant ${credentials.tenantId}, ${deviceIds.length} devices; credentials in ${out}\n`);
