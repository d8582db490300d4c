// Bundles the dashboard with esbuild into dashboard/dist (served by the cloud
// at `/`): one JS file including ApexCharts from node_modules, one CSS file,
// and the HTML page. Nothing is fetched at run time.

import { copyFile, mkdir, rm } from "node:fs/promises";
import { join } from "node:path";
import { build } from "esbuild";

const here = import.meta.dirname;
const out = join(here, "dist");

await rm(out, { recursive: true, force: true });
await mkdir(out, { recursive: true });
await build({
  entryPoints: [
    { in: join(here, "src", "main.ts"), out: "app" },
    { in: join(here, "src", "styles.css"), out: "app" },
  ],
  outdir: out,
  bundle: true,
  format: "esm",
  platform: "browser",
  target: ["es2022"],
  minify: true,
  sourcemap: true,
  logLevel: "warning",
});
await copyFile(join(here, "index.html"), join(out, "index.html"));
