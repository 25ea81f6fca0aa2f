#!/usr/bin/env node
"use strict";
// The bin loads one bundle (dist/tsvmm-bin.cjs: the CLI with the pure @tsvmm packages inlined)
// through a V8 code cache: compiling ~0.8 MB of JavaScript on every `tsvmm run` cost more than
// a third of its start-up (bench tsvmm-run-hello). Node >= 22.1 has its own compile cache
// (module.enableCompileCache); on Node 20 the bundle is compiled with vm.Script and cachedData.
// The cache is an optimisation only: any failure to find, read, use or write it falls back to
// compiling as usual. TSVMM_NO_CODE_CACHE=1 or NODE_DISABLE_COMPILE_CACHE=1 turn it off.
const Module = require("node:module");
const { join, dirname } = require("node:path");

const bundle = join(__dirname, "..", "dist", "tsvmm-bin.cjs");

/**
 * The user's own cache directory for this tsvmm version and this Node, below XDG_CACHE_HOME or
 * HOME (never a shared /tmp, where another user could plant code); `top` is the directory that
 * must already exist.
 */
function cacheDir() {
  const env = process.env;
  const top = env.XDG_CACHE_HOME?.startsWith("/") ? env.XDG_CACHE_HOME : env.HOME?.startsWith("/") ? env.HOME : undefined;
  if (top === undefined) return undefined;
  const base = top === env.XDG_CACHE_HOME ? top : join(top, ".cache");
  let version = "unknown";
  try {
    version = JSON.parse(require("node:fs").readFileSync(join(__dirname, "..", "package.json"), "utf8")).version;
  } catch {}
  return { top, dir: join(base, "tsvmm", `code-cache-${version}`, `node-${process.version}-${process.arch}`) };
}

function load() {
  const env = process.env;
  if (env.TSVMM_NO_CODE_CACHE === "1" || env.NODE_DISABLE_COMPILE_CACHE === "1") return require(bundle);
  if (typeof Module.enableCompileCache === "function") {
    try {
      const where = cacheDir();
      if (where !== undefined) Module.enableCompileCache(where.dir);
    } catch {}
    return require(bundle);
  }
  let prepared;
  try {
    prepared = prepare();
  } catch {
    return require(bundle);
  }
  // From here on the bundle runs: an error is the bundle's own and is not retried.
  const { script, mod, where, file, write } = prepared;
  Module._cache[bundle] = mod;
  try {
    script.runInThisContext()(mod.exports, Module.createRequire(bundle), mod, bundle, dirname(bundle));
  } catch (e) {
    delete Module._cache[bundle];
    throw e;
  }
  mod.loaded = true;
  // Written at exit, so that the functions this run compiled lazily are in it too.
  if (write) process.once("exit", () => saveCache(script, where, file));
  return mod.exports;
}

// CRC-32 (zlib's, Node >= 20.15): node:crypto alone took longer to load than the hashing saves.
const crc32 = (bytes) => require("node:zlib").crc32(bytes) >>> 0;

function prepare() {
  const fs = require("node:fs");
  const vm = require("node:vm");
  const bytes = fs.readFileSync(bundle);
  // V8 checks only the source's length against a cache: the content's CRC and length name the file.
  const file = `${crc32(bytes).toString(16).padStart(8, "0")}-${bytes.length}.v8`;
  const where = cacheDir();
  let cachedData;
  if (where !== undefined) {
    try {
      // [CRC-32 of the data, LE][data]: V8 (Node 20) does not checksum a code cache, and a damaged
      // one can abort the process, so only data whose CRC matches reaches V8.
      const stored = fs.readFileSync(join(where.dir, file));
      if (stored.length > 4 && stored.readUInt32LE(0) === crc32(stored.subarray(4))) cachedData = stored.subarray(4);
    } catch {}
  }
  // The bundle is ASCII (esbuild escapes the rest): latin1 decodes it several times faster.
  const source = require("node:buffer").isAscii(bytes) ? bytes.latin1Slice() : bytes.toString("utf8");
  const script = new vm.Script(Module.wrap(source), { filename: bundle, cachedData });
  const mod = new Module(bundle, module);
  mod.filename = bundle;
  mod.paths = module.paths;
  return { script, mod, where, file, write: where !== undefined && (cachedData === undefined || script.cachedDataRejected === true) };
}

/**
 * mkdir -p below `top`, one level at a time: Node 20's recursive mkdirSync can spin for ever (under
 * /proc), and a missing HOME is not ours to create.
 */
function makeDirs(fs, top, dir) {
  if (dir === top) return;
  const parent = dirname(dir);
  if (parent === dir) throw new Error(`${dir} is not below ${top}`);
  makeDirs(fs, top, parent);
  try {
    fs.mkdirSync(dir, { mode: 0o700 });
  } catch (e) {
    if (e.code !== "EEXIST") throw e;
  }
}

function saveCache(script, { top, dir }, file) {
  try {
    const fs = require("node:fs");
    const data = script.createCachedData();
    makeDirs(fs, top, dir);
    // Other builds of the same version (a work tree being edited) would only pile up.
    for (const f of fs.readdirSync(dir)) if (f.endsWith(".v8") && f !== file) fs.rmSync(join(dir, f), { force: true });
    const tmp = join(dir, `${file}.${process.pid}.tmp`);
    const head = Buffer.alloc(4);
    head.writeUInt32LE(crc32(data));
    fs.writeFileSync(tmp, Buffer.concat([head, data]), { mode: 0o600 });
    fs.renameSync(tmp, join(dir, file));
  } catch {}
}

// Required rather than run (bench/vmm/phases.cjs): the loader alone.
if (require.main === module) load().run();
else module.exports = { load };
