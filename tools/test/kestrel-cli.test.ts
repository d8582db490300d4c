// The `kestrel` CLI against the real cloud: log in (password or API key), make the signing key,
// upload and sign an image, refuse a damaged one, create, pause, resume and watch campaigns, with
// the exit codes scripts rely on: 0 done, 1 usage, 2 API error, 3 halted, 4 cancelled, 5 timeout.

import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { promisify } from "node:util";
import { firmwareImage } from "../../gateway/test/ota-fixture.ts";
import { RealCloud } from "../../gateway/test/real-cloud.ts";
import { type CliIo, EXIT, runCli } from "../src/cli/kestrel.ts";
import { tempDir } from "./helpers.ts";

const DEVICES = ["cli-1", "cli-2"];

interface Run {
  code: number;
  out: string;
  err: string;
}

describe("kestrel CLI", () => {
  let cloud: RealCloud;
  let dir: string;
  let env: NodeJS.ProcessEnv;
  let imagePath: string;
  let artifactId = "";

  async function kestrel(
    args: string[],
    options: { stdin?: string; env?: NodeJS.ProcessEnv; tick?: () => Promise<void> } = {},
  ): Promise<Run> {
    let out = "";
    let err = "";
    const io: CliIo = {
      out: (text) => {
        out += text;
      },
      err: (text) => {
        err += text;
      },
      stdin: async () => options.stdin ?? "",
      isTty: false,
      sleep: async () => {
        await options.tick?.();
        await new Promise((resolve) => setTimeout(resolve, 20));
      },
    };
    const code = await runCli(args, options.env ?? env, io);
    return { code, out, err };
  }

  /** What the gateway would relay for a device. */
  async function report(deviceId: string, campaign: string, sha256: string, status: string, extra = {}) {
    const response = await fetch(`${cloud.url}/api/gateway/v1/artifact-reports`, {
      method: "POST",
      headers: { authorization: `Bearer ${cloud.credentials.gatewayKey}`, "content-type": "application/json" },
      body: JSON.stringify({
        reports: [{ deviceId, receivedAt: Date.now(), report: { v: 1, campaign, sha256, status, ...extra } }],
      }),
    });
    assert.equal(response.status, 200);
  }

  before(async () => {
    cloud = await RealCloud.start(DEVICES, { OTA_TICK_MS: "100" });
    dir = await tempDir("kestrel-cli");
    env = { KESTREL_CONFIG: join(dir, "credentials.json") };
    imagePath = join(dir, "fw.bin");
    await writeFile(imagePath, firmwareImage({ version: "2.3.4", size: 20_000, seed: 31 }));
  });
  after(() => cloud?.stop());

  test("without credentials it says how to log in; a wrong password is an API error; a bad command is usage", async () => {
    const anonymous = await kestrel(["campaign", "list"]);
    assert.equal(anonymous.code, EXIT.api);
    assert.match(anonymous.err, /not logged in: run `kestrel login`/);
    const wrong = await kestrel([
      "login",
      "--url",
      cloud.url,
      "--email",
      cloud.credentials.admin.email,
      "--password",
      "nope",
    ]);
    assert.equal(wrong.code, EXIT.api);
    assert.match(wrong.err, /401 login_failed/);
    assert.equal((await kestrel(["frobnicate"])).code, EXIT.usage);
    assert.equal((await kestrel(["campaign", "create", "--artifact", "x"])).code, EXIT.usage, "no devices named");
    assert.equal((await kestrel(["upload", imagePath, "--name", "fw", "--chip", "esp32", "--bogus"])).code, EXIT.usage);
  });

  test("login with the password on stdin, make the key, upload and sign; a damaged image is refused", async () => {
    const login = await kestrel(
      ["login", "--url", cloud.url, "--email", cloud.credentials.admin.email, "--password-stdin"],
      {
        stdin: `${cloud.credentials.admin.password}\n`,
      },
    );
    assert.equal(login.code, EXIT.ok, login.err);
    const key = await kestrel(["keys", "create"]);
    assert.equal(key.code, EXIT.ok, key.err);
    assert.match(key.out, /provision devices with otaKeys=[0-9a-f]{16}:04[0-9a-f]{128}/);

    const uploaded = await kestrel([
      "upload",
      imagePath,
      "--name",
      "kestrel-fw",
      "--chip",
      "esp32",
      "--sign",
      "--json",
    ]);
    assert.equal(uploaded.code, EXIT.ok, uploaded.err);
    const artifact = JSON.parse(uploaded.out);
    assert.equal(artifact.version, "2.3.4");
    assert.equal(artifact.signatures.length, 1);
    artifactId = artifact.artifactId;

    const damaged = join(dir, "damaged.bin");
    const bytes = firmwareImage({ version: "2.3.5", size: 20_000, seed: 32 });
    bytes[10_000] = (bytes[10_000] as number) ^ 0x40;
    await writeFile(damaged, bytes);
    const refused = await kestrel(["upload", damaged, "--name", "kestrel-fw", "--chip", "esp32"]);
    assert.equal(refused.code, EXIT.api);
    assert.match(refused.err, /bad_checksum.*\(422 invalid_artifact\)/);
    const list = await kestrel(["artifacts"]);
    assert.equal(list.out.trim().split("\n").length, 1, "only the good image is in the registry");
  });

  test("a campaign created, paused and resumed, watched to completion: exit 0 and a per-stage table", async () => {
    const created = await kestrel([
      "campaign",
      "create",
      "--artifact",
      artifactId,
      "--devices",
      DEVICES.join(","),
      "--stages",
      "50,100",
      "--soak",
      "0",
      "--window",
      "0",
      "--json",
    ]);
    assert.equal(created.code, EXIT.ok, created.err);
    const { campaignId, sha256 } = JSON.parse(created.out);
    assert.equal((await kestrel(["campaign", "pause", campaignId])).code, EXIT.ok);
    assert.match((await kestrel(["campaign", "show", campaignId])).out, /paused, stage 1\/2/);
    assert.match((await kestrel(["campaign", "resume", campaignId])).out, /running/);
    // Devices working while the CLI watches: the gateway's reports, one step per poll.
    const steps = DEVICES.flatMap((deviceId) =>
      ["notified", "downloading", "verifying", "installed", "rebooting", "confirmed"].map(
        (status) => [deviceId, status] as const,
      ),
    );
    const watched = await kestrel(["campaign", "watch", campaignId, "--interval", "0.1"], {
      tick: async () => {
        const step = steps.shift();
        if (step)
          await report(
            step[0],
            campaignId,
            sha256,
            step[1],
            step[1] === "downloading" ? { bytes: 5000, total: 20_000 } : {},
          );
      },
    });
    assert.equal(watched.code, EXIT.ok, watched.err);
    assert.match(watched.out, /completed/);
    assert.match(watched.out, /stage\s+%\s+devices\s+state\s+confirmed/);
    assert.match(watched.out, /download\s+\[#+-+\] 25%/, "a progress bar while a device downloads");
    assert.match(watched.out, /devices\s+\[#{30}\] 100% \(2\/2 finished\)/);
  });

  test("watch ends with exit 3 on a halt (and shows why), 4 on a cancel, 5 on its timeout; an API key works from the environment", async () => {
    const second = await kestrel(["upload", imagePath.replace("fw.bin", "fw2.bin"), "--name", "x", "--chip", "esp32"]);
    assert.equal(second.code, EXIT.api, "a missing file is reported, not thrown");
    await writeFile(join(dir, "fw3.bin"), firmwareImage({ version: "2.4.0", size: 20_000, seed: 33 }));
    const uploaded = JSON.parse(
      (await kestrel(["upload", join(dir, "fw3.bin"), "--name", "kestrel-fw", "--chip", "esp32", "--sign", "--json"]))
        .out,
    );
    const create = async () =>
      JSON.parse(
        (
          await kestrel([
            "campaign",
            "create",
            "--artifact",
            uploaded.artifactId,
            "--devices",
            DEVICES[0] as string,
            "--stages",
            "100",
            "--json",
          ])
        ).out,
      ) as { campaignId: string; sha256: string };

    const halting = await create();
    const halted = await kestrel(["campaign", "watch", halting.campaignId], {
      tick: () =>
        report(DEVICES[0] as string, halting.campaignId, halting.sha256, "rolled-back", {
          code: "boot_failed",
          reason: "crashed",
        }),
    });
    assert.equal(halted.code, EXIT.halted);
    assert.match(halted.out, /halted: stage 1: 1 of 1 devices rolled back/);
    assert.match(halted.out, /cli-1: rolled-back boot_failed crashed/);
    await kestrel(["campaign", "cancel", halting.campaignId]);

    const cancelling = await create();
    const cancelled = await kestrel(["campaign", "watch", cancelling.campaignId], {
      tick: async () => {
        await kestrel(["campaign", "cancel", cancelling.campaignId]);
      },
    });
    assert.equal(cancelled.code, EXIT.cancelled);

    const slow = await create();
    const timedOut = await kestrel(["campaign", "watch", slow.campaignId, "--timeout", "1"], {
      tick: () => new Promise((resolve) => setTimeout(resolve, 300)),
    });
    assert.equal(timedOut.code, EXIT.timeout);
    await kestrel(["campaign", "cancel", slow.campaignId]);

    const keyResponse = await fetch(`${cloud.url}/api/keys`, {
      method: "POST",
      headers: {
        authorization: `Bearer ${JSON.parse(await import("node:fs/promises").then((fs) => fs.readFile(env.KESTREL_CONFIG as string, "utf8"))).token}`,
        "content-type": "application/json",
      },
      body: JSON.stringify({ name: "ci", scopes: ["read"] }),
    });
    const { key } = (await keyResponse.json()) as { key: string };
    const ci = await kestrel(["campaign", "list"], { env: { KESTREL_URL: cloud.url, KESTREL_API_KEY: key } });
    assert.equal(ci.code, EXIT.ok, ci.err);
    assert.equal(ci.out.trim().split("\n").length, 5, "a header and the four campaigns");
    const denied = await kestrel(["keys", "create"], { env: { KESTREL_URL: cloud.url, KESTREL_API_KEY: key } });
    assert.equal(denied.code, EXIT.api);
    assert.match(denied.err, /403 forbidden/);
  });

  test("the bin runs as a command: help exits 0, an unknown command 1", async () => {
    const bin = new URL("../bin/kestrel.mjs", import.meta.url).pathname;
    const run = promisify(execFile);
    const help = await run(process.execPath, [bin, "--help"]);
    assert.match(help.stdout, /usage: kestrel <command>/);
    await assert.rejects(
      run(process.execPath, [bin, "nonsense"]),
      (error: { code?: number }) => error.code === EXIT.usage,
    );
  });
});
