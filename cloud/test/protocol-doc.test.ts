// docs/protocol.md is the API's prose reference: it must name every route the cloud serves and no
// route it does not, and state the bounds the schemas enforce. "Where they disagree, the code is
// right and this page is a bug" — this test finds the bug.

import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { REPO_ROOT } from "../src/config.ts";
import { DEVICE_LIMITS } from "../src/devices/device-view.ts";
import { startTestCloud, type TestCloud } from "./helpers.ts";

const ROUTE = /\b(GET|POST|PATCH|PUT|DELETE) (\/api\/[^\s`?,)]+)/g;

describe("docs/protocol.md agrees with the code", () => {
  let cloud: TestCloud;
  let protocol: string;

  before(async () => {
    cloud = await startTestCloud();
    protocol = await readFile(join(REPO_ROOT, "docs", "protocol.md"), "utf8");
  });
  after(() => cloud?.close());

  test("every route is described, and every route described exists", () => {
    const served = new Set(
      cloud.app.apiRoutes.map((route) => `${route.method} ${route.url.replace(/:(\w+)/g, "{$1}")}`),
    );
    const described = new Set([...protocol.matchAll(ROUTE)].map(([, method, path]) => `${method} ${path}`));
    assert.deepEqual([...served].filter((route) => !described.has(route)).sort(), [], "served but not in protocol.md");
    assert.deepEqual([...described].filter((route) => !served.has(route)).sort(), [], "in protocol.md but not served");
  });

  test("the device list's paging and the history's resolutions are stated as the code has them", () => {
    assert.match(
      protocol,
      new RegExp(`${DEVICE_LIMITS.defaultPageSize} devices by default, \`limit\` 1\\.\\.${DEVICE_LIMITS.pageSize}`),
    );
    assert.doesNotMatch(protocol, /at most 1,000\)/, "device lists are paged, not capped at 1,000");
    for (const resolution of ["`raw`", "`1m`", "`1h`", "`1d`", "`auto`"])
      assert.ok(protocol.includes(resolution), resolution);
    assert.match(protocol, /QoS 0 is accepted/);
  });
});
