// manifest.json as both mcconfig and the simulator read it: the device build's SDK includes stay
// under the esp32 platform, and the simulator's platform maps the Moddable specifiers to its modules.

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { FIRMWARE_DIR, loadFirmwareImage, SIM_PLATFORM } from "../sim/firmware-image.ts";
import { readSettings } from "../src/settings.ts";

interface Manifest {
  include: string[];
  modules: Record<string, string>;
  config: Record<string, unknown>;
  platforms: Record<string, { include?: string[]; modules: Record<string, string> }>;
}

const manifest = JSON.parse(readFileSync(join(FIRMWARE_DIR, "manifest.json"), "utf8")) as Manifest;

test("SDK manifests that reject other platforms are included for esp32 only", () => {
  const esp32 = manifest.platforms.esp32;
  assert.ok(esp32?.include);
  for (const include of [
    "$(MODDABLE)/modules/io/manifest.json",
    "$(MODDABLE)/examples/manifest_net.json",
    "$(MODULES)/network/mqtt/manifest.json",
    "$(MODULES)/files/preference/manifest.json",
  ])
    assert.ok(esp32.include.includes(include), include);
  assert.deepEqual(manifest.include, ["$(MODDABLE)/examples/manifest_base.json"]);
  assert.equal(esp32.modules.mqtt, "./typings/mqtt", "the SDK has no typings for its mqtt module");
});

test("the simulator image maps every Moddable specifier the firmware imports", () => {
  const image = loadFirmwareImage();
  for (const specifier of ["embedded:io/i2c", "mqtt", "preference", "time", "timer"]) {
    const module = image.modules.get(specifier);
    assert.ok(module?.host, `${specifier} comes from the ${SIM_PLATFORM} section`);
    assert.match(module.file, /build\/firmware\/sim\/xs\/[a-z0-9]+\.js$/);
  }
  assert.match(image.modules.get("main")?.file ?? "", /build\/firmware\/src\/main\.js$/);
  assert.match(image.modules.get("@kestrel/wire")?.file ?? "", /build\/wire\/src\/index\.js$/);
  assert.equal(image.modules.get("sensors/bmp280")?.host, false);
  assert.equal(image.config.samplesPerBatch, manifest.config.samplesPerBatch);
});

test("the manifest's config defaults are valid device settings once the per-device values are given", () => {
  const settings = readSettings({ ...manifest.config, deviceId: "dev-1", token: "t0ken", mqttHost: "gateway.local" });
  assert.equal(settings.bmp280Address, 0x76);
  assert.equal(settings.sampleIntervalMs, 1000);
});

test("a device built without its identity refuses to start with a clear message", () => {
  // Credentials and the gateway host come from the mcconfig command line, never from the manifest.
  assert.throws(() => readSettings(manifest.config), /config: deviceId must be a non-empty string/);
  assert.throws(
    () => readSettings({ ...manifest.config, deviceId: "dev-1" }),
    /config: token must be a non-empty string/,
  );
});
