#!/usr/bin/env node
// The `kestrel` command (tools/src/cli/kestrel.ts), run through tsx like the rest of the repository's tools.

import { register } from "tsx/esm/api";

register();
const { runCli } = await import("../src/cli/kestrel.ts");
const io = {
  out: (text) => process.stdout.write(text),
  err: (text) => process.stderr.write(text),
  stdin: async () => {
    let text = "";
    for await (const chunk of process.stdin) text += chunk;
    return text;
  },
  isTty: Boolean(process.stdout.isTTY),
  sleep: (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
};
process.exitCode = await runCli(process.argv.slice(2), process.env, io);
