// Reads a V8 CPU profile (.cpuprofile, from --cpu-prof: GATEWAY_CPU_PROF=<dir> on the benchmarks)
// and writes what docs/benchmarks.md shows of it: a top-down table (inclusive share of the busy time
// by stage of a message's way through the gateway, and self time by component) and a flame graph (SVG).
//   npx tsx gateway/bench/profile-report.ts <file.cpuprofile> [out.svg]     (TITLE=<the graph's title>)

import { readFileSync, writeFileSync } from "node:fs";

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}

interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

/** A merged call tree: one node per distinct stack of frame names. */
interface Frame {
  name: string;
  component: string;
  self: number;
  total: number;
  children: Map<string, Frame>;
}

/** Frames that are not work: the event loop waiting, and the profiler's own bookkeeping. */
const NOT_WORK = new Set(["(idle)", "(program)", "(root)"]);

/** Where a frame's code lives: a package, a module of ours, Node's internals, or V8 itself. */
function componentOf(url: string, name: string): string {
  if (!url) return name.startsWith("(") ? name : "native (syscalls, V8 builtins)";
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url)?.[1];
  if (pkg) return pkg;
  if (url.startsWith("node:")) return `node:${url.slice(5).split("/")[1] ?? url.slice(5)}`;
  const ours = /\/(gateway|wire|cloud)\/src\/(.+)$/.exec(url);
  return ours ? `${ours[1]}/${ours[2]}` : url;
}

function newFrame(name: string, component: string): Frame {
  return { name, component, self: 0, total: 0, children: new Map() };
}

export function callTree(profile: Profile): Frame {
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const parent = new Map<number, number>();
  for (const node of profile.nodes) for (const child of node.children ?? []) parent.set(child, node.id);
  const selfTime = new Map<number, number>();
  profile.samples.forEach((id, i) => {
    selfTime.set(id, (selfTime.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0));
  });
  const root = newFrame("all", "");
  for (const [id, time] of selfTime) {
    const stack: ProfileNode[] = [];
    for (let at: number | undefined = id; at !== undefined; at = parent.get(at)) {
      const node = byId.get(at);
      if (node) stack.unshift(node);
    }
    const leaf = stack.at(-1);
    if (!leaf || NOT_WORK.has(leaf.callFrame.functionName)) continue;
    let frame = root;
    root.total += time;
    for (const node of stack) {
      const { functionName, url } = node.callFrame;
      if (functionName === "(root)") continue;
      const name = functionName || "(anonymous)";
      const key = `${name} ${url}`;
      let child = frame.children.get(key);
      if (!child) {
        child = newFrame(name, componentOf(url, name));
        frame.children.set(key, child);
      }
      child.total += time;
      frame = child;
    }
    frame.self += time;
  }
  return root;
}

type FrameTest = (frame: Frame) => boolean;

/** Busy time under every frame that matches, counted once per stack, less what is under `except` there. */
function inclusive(root: Frame, matches: FrameTest, except?: FrameTest): number {
  let total = 0;
  const walk = (frame: Frame) => {
    if (matches(frame)) {
      total += frame.total - (except ? inclusive(frame, except) : 0);
      return;
    }
    for (const child of frame.children.values()) walk(child);
  };
  walk(root);
  return total;
}

const ours =
  (name: string, module: string): FrameTest =>
  (f) =>
    f.name === name && f.component.endsWith(module);
const intake = ours("accept", "intake.ts");

/** Stages of a device's publish, by the frames that start them (and the nested stage they leave out). */
const STAGES: Array<[string, FrameTest, FrameTest?]> = [
  ["socket writes (PUBACK + telemetry ack, one write)", ours("flush", "broker/session-server.ts")],
  [
    "reading and parsing MQTT (socket reads, node:streams, framing, decoding; the intake left out)",
    (f) => f.name === "onStreamRead",
    // The same frame reads the cloud's HTTP answers, which are the forwarder's.
    (f) => intake(f) || f.name === "socketOnData",
  ],
  ["intake: validate, enqueue (gateway/src/intake.ts)", intake],
  ["disk queue commit (write, O_DSYNC)", ours("commit", "disk-queue.ts")],
  ["forwarding to the cloud (read back, HTTP)", ours("deliver", "forwarder.ts")],
  ["connecting devices (authenticate)", ours("admit", "broker/session-server.ts")],
  ["garbage collector", (f) => f.name === "(garbage collector)"],
];

export function topDownTable(root: Frame): string {
  const share = (time: number) => `${((100 * time) / root.total).toFixed(1)}%`;
  const lines = ["| stage (inclusive) | share of busy CPU |", "| --- | ---: |"];
  for (const [stage, matches, except] of STAGES) {
    lines.push(`| ${stage} | ${share(inclusive(root, matches, except))} |`);
  }
  const bySelf = new Map<string, number>();
  const walk = (frame: Frame) => {
    if (frame.self > 0) bySelf.set(frame.component, (bySelf.get(frame.component) ?? 0) + frame.self);
    for (const child of frame.children.values()) walk(child);
  };
  walk(root);
  lines.push("", "| component (self time) | share of busy CPU |", "| --- | ---: |");
  for (const [component, time] of [...bySelf].sort((a, b) => b[1] - a[1]).slice(0, 15)) {
    lines.push(`| ${component} | ${share(time)} |`);
  }
  return lines.join("\n");
}

const ROW = 16;
const WIDTH = 1200;
/** Deeper frames (start-up's module loading, mostly) are left out: they would make the graph tall and empty. */
const MAX_DEPTH = 32;

function xmlText(text: string): string {
  return text.replace(/[<>&"]/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** A flame graph of the busy time: callers below, callees above, width for time. */
export function flameGraph(root: Frame, title: string): string {
  let depth = 0;
  const measure = (frame: Frame, level: number) => {
    depth = Math.max(depth, level);
    if (level < MAX_DEPTH) for (const child of frame.children.values()) measure(child, level + 1);
  };
  measure(root, 0);
  const height = (depth + 2) * ROW;
  const rects: string[] = [];
  const hue = (component: string) => {
    let hash = 0;
    for (const char of component) hash = (hash * 31 + char.charCodeAt(0)) % 360;
    return hash;
  };
  const draw = (frame: Frame, x: number, level: number) => {
    const width = (frame.total / root.total) * WIDTH;
    if (width < 1 || level > MAX_DEPTH) return;
    const y = height - (level + 1) * ROW;
    const label = `${frame.name} (${frame.component}) ${((100 * frame.total) / root.total).toFixed(1)}%`;
    const text = width > 40 ? frame.name.slice(0, Math.floor(width / 7)) : "";
    rects.push(
      `<g><title>${xmlText(label)}</title><rect x="${x.toFixed(1)}" y="${y}" width="${width.toFixed(1)}" height="${ROW - 1}" fill="hsl(${hue(frame.component)},60%,70%)"/>` +
        (text ? `<text x="${(x + 2).toFixed(1)}" y="${y + ROW - 4}">${xmlText(text)}</text>` : "") +
        "</g>",
    );
    let at = x;
    for (const child of [...frame.children.values()].sort((a, b) => b.total - a.total)) {
      draw(child, at, level + 1);
      at += (child.total / root.total) * WIDTH;
    }
  };
  draw(root, 0, 0);
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${height + ROW}" font-family="monospace" font-size="11">`,
    `<title>${xmlText(title)}</title>`,
    `<text x="4" y="12">${xmlText(title)} (hover a frame for its name, component and share)</text>`,
    ...rects,
    "</svg>",
    "",
  ].join("\n");
}

if (import.meta.main) {
  const [file, svg] = process.argv.slice(2);
  if (!file) throw new Error("usage: profile-report.ts <file.cpuprofile> [out.svg]");
  const root = callTree(JSON.parse(readFileSync(file, "utf8")) as Profile);
  process.stdout.write(`${topDownTable(root)}\n`);
  if (svg) writeFileSync(svg, flameGraph(root, process.env.TITLE || `gateway CPU profile: ${file.split("/").at(-1)}`));
}
