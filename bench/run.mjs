// `npm run bench`: runs every bench/<topic>/index.mjs (or those named on the command line),
// prints each figure with its ratio to the C baseline, and writes bench/results.json.
import { existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { benchRoot } from "./lib.mjs";

const only = process.argv.slice(2);
const topics = readdirSync(benchRoot, { withFileTypes: true })
  .filter((d) => d.isDirectory() && d.name !== "out" && existsSync(join(benchRoot, d.name, "index.mjs")))
  .map((d) => d.name)
  .filter((t) => only.length === 0 || only.includes(t))
  .sort();

// A run of named topics updates their figures and keeps the others' from the last full run.
const resultsPath = join(benchRoot, "results.json");
const results = only.length > 0 && existsSync(resultsPath) ? JSON.parse(readFileSync(resultsPath, "utf8")) : {};
let failed = false;
for (const topic of topics) {
  console.log(`# ${topic}`);
  try {
    const mod = await import(pathToFileURL(join(benchRoot, topic, "index.mjs")).href);
    const rows = await mod.default({ topic });
    for (const r of rows) {
      const { name, ...rest } = r;
      results[name] = rest;
      const ratio = r.ratio === null || r.ratio === undefined ? "" : `  ratio ${r.ratio.toFixed(3)}`;
      const c = r.c === null || r.c === undefined ? "" : `  (C: ${fmt(r.c)} ${r.unit})`;
      const goal = r.goal ? `  goal ${r.goal}` : "";
      console.log(`${name.padEnd(34)} ${fmt(r.value).padStart(12)} ${r.unit}${c}${ratio}${goal}`);
    }
  } catch (e) {
    failed = true;
    console.error(`${topic}: FAILED: ${e?.stack ?? e}`);
  }
}
writeFileSync(resultsPath, `${JSON.stringify(results, null, 2)}\n`);
console.log(`wrote bench/results.json (${Object.keys(results).length} figures)`);
if (failed) process.exitCode = 1;

function fmt(n) {
  if (typeof n !== "number") return String(n);
  return Math.abs(n) >= 1000 ? n.toFixed(0) : n.toPrecision(4);
}
