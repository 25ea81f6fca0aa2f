#!/usr/bin/env node
// The kernel modules of the same Debian cloud kernel package fetch-debian-kernel.mjs caches: the .deb
// holds ./lib/modules/<release>/kernel/**.ko (uncompressed: the config has CONFIG_MODULE_COMPRESS_NONE)
// but no modules.dep (depmod writes it at install time), so the load order is read from each module's
// own .modinfo "depends=" entry. Extracts the tree once under <cache>/modules/.
// `node packages/elf-loader/scripts/fetch-debian-modules.mjs virtio_blk vsock ...` prints one JSON
// line: {"release", "modulesDir", "modules": [{"name", "path"}]}, the modules asked for and everything
// they depend on, each after its dependencies (the order insmod needs). Import { fetchDebianModules }
// to use it from a test.
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { fetchDebianKernel } from "./fetch-debian-kernel.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const repoRoot = resolve(here, "../../..");

/** Module names use underscores; file names may use dashes (virtio-rng.ko is module virtio_rng). */
const moduleName = (file) => file.replace(/\.ko$/, "").replaceAll("-", "_");

function walk(dir, out = []) {
  for (const e of readdirSync(dir)) {
    const p = join(dir, e);
    if (statSync(p).isDirectory()) walk(p, out);
    else if (e.endsWith(".ko")) out.push(p);
  }
  return out;
}

/** The "depends=" value of a module's .modinfo section (NUL-separated key=value strings). */
function dependsOf(path) {
  const bytes = readFileSync(path);
  const key = Buffer.from("\0depends=");
  const at = bytes.indexOf(key);
  if (at < 0) throw new Error(`${path}: no depends= entry in .modinfo`);
  const start = at + key.length;
  const end = bytes.indexOf(0, start);
  const value = bytes.toString("latin1", start, end);
  return value === "" ? [] : value.split(",");
}

function extract(debPath, modulesRoot) {
  const tmp = `${modulesRoot}.tmp`;
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp, { recursive: true });
  execFileSync("sh", ["-c", `dpkg-deb --fsys-tarfile "$1" | tar -x -C "$2" --wildcards './lib/modules/*'`, "sh", debPath, tmp], { stdio: ["ignore", "ignore", "pipe"] });
  renameSync(tmp, modulesRoot);
}

export function fetchDebianModules(names, cacheDir = join(repoRoot, ".cache", "debian-kernel")) {
  const kernel = fetchDebianKernel(cacheDir);
  const modulesRoot = join(cacheDir, "modules");
  if (!existsSync(modulesRoot)) extract(kernel.deb, modulesRoot);
  const releases = readdirSync(join(modulesRoot, "lib", "modules"));
  if (releases.length !== 1) throw new Error(`${modulesRoot}: expected one release under lib/modules, found ${releases.join(", ")}`);
  const release = releases[0];
  const modulesDir = join(modulesRoot, "lib", "modules", release);
  const byName = new Map(walk(join(modulesDir, "kernel")).map((p) => [moduleName(p.split("/").pop()), p]));
  const order = [];
  const visiting = new Set();
  const visit = (name) => {
    const n = name.replaceAll("-", "_");
    if (order.some((m) => m.name === n)) return;
    if (visiting.has(n)) throw new Error(`module dependency cycle through ${n}`);
    const path = byName.get(n);
    if (path === undefined) throw new Error(`${release}: no module ${n} (built in, or not built)`);
    visiting.add(n);
    for (const d of dependsOf(path)) visit(d);
    visiting.delete(n);
    order.push({ name: n, path });
  };
  for (const n of names) visit(n);
  return { release, modulesDir, modules: order };
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  console.log(JSON.stringify(fetchDebianModules(process.argv.slice(2))));
}
