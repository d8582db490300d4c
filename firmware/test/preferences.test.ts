// The simulated flash behind `preference`: persistence across restarts and the ESP32 NVS rules.

import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { PreferenceStore } from "../sim/preferences.ts";

function withStore(run: (file: string) => void): void {
  const dir = mkdtempSync(join(tmpdir(), "kestrel-prefs-"));
  try {
    run(join(dir, "dev.preferences.json"));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

test("values survive a new store on the same file", () => {
  withStore((file) => {
    const store = new PreferenceStore(file);
    store.set("kestrel", "boot", 3);
    store.set("kestrel", "name", "lab");
    store.set("kestrel", "on", true);
    store.set("kestrel", "blob", { buffer: [1, 2, 300] });
    const reopened = new PreferenceStore(file);
    assert.equal(reopened.get("kestrel", "boot"), 3);
    assert.equal(reopened.get("kestrel", "name"), "lab");
    assert.equal(reopened.get("kestrel", "on"), true);
    assert.deepEqual(reopened.get("kestrel", "blob"), { buffer: [1, 2, 44] });
    assert.deepEqual(reopened.keys("kestrel").sort(), ["blob", "boot", "name", "on"]);
    reopened.delete("kestrel", "name");
    assert.equal(new PreferenceStore(file).get("kestrel", "name"), undefined);
    assert.ok(JSON.parse(readFileSync(file, "utf8")).kestrel);
  });
});

test("enforces NVS limits with clear errors", () => {
  withStore((file) => {
    const store = new PreferenceStore(file);
    assert.throws(() => store.set("a-domain-that-is-long", "k", 1), /domain must be 1\.\.15 characters/);
    assert.throws(() => store.set("kestrel", "", 1), /key must be 1\.\.15 characters/);
    assert.throws(() => store.set("kestrel", "f", 1.5), /float unsupported/);
    assert.throws(() => store.set("kestrel", "o", { nested: true }), /unsupported type/);
    assert.equal(store.get("kestrel", "missing"), undefined);
  });
});

test("starts empty without a file, and refuses a corrupt one instead of starting empty", () => {
  withStore((file) => {
    assert.equal(new PreferenceStore(file).get("kestrel", "boot"), undefined);
    writeFileSync(file, "{ not json");
    assert.throws(() => new PreferenceStore(file), SyntaxError);
    writeFileSync(file, "[]");
    assert.throws(() => new PreferenceStore(file), /must be a JSON object of domains/);
  });
});
