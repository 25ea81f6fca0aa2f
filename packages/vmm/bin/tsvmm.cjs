#!/usr/bin/env node
"use strict";
// The bin loads one bundle (dist/tsvmm-bin.cjs: the CLI with the pure @tsvmm packages inlined;
// @tsvmm/abi and @tsvmm/kvm-backend stay packages of their own) through a V8 code cache:
// compiling ~1 MB of JavaScript on every `tsvmm run` cost more than a third of its start-up
// (bench tsvmm-run-hello). Node >= 22.1 has its own compile cache (module.enableCompileCache); on
// Node 20 the bundle, and the CommonJS files it requires while it loads, are compiled with
// vm.Script and cachedData. The cache is an optimisation only: any failure to find, read, use or
// write it compiles as usual. TSVMM_NO_CODE_CACHE=1 or NODE_DISABLE_COMPILE_CACHE=1 turn it off.
const Module = require("node:module");
const { join, dirname, basename } = require("node:path");

const bundle = join(__dirname, "..", "dist", "tsvmm-bin.cjs");
const mainModule = require.main;

/**
 * The user's own cache directory for this tsvmm version and this Node, below XDG_CACHE_HOME or
 * HOME (never a shared /tmp, where another user could plant code); `top` is the directory that
 * must already exist.
 */
function cacheDir(fs) {
  const env = process.env;
  const top = env.XDG_CACHE_HOME?.startsWith("/") ? env.XDG_CACHE_HOME : env.HOME?.startsWith("/") ? env.HOME : undefined;
  if (top === undefined) return undefined;
  const base = top === env.XDG_CACHE_HOME ? top : join(top, ".cache");
  let version = "unknown";
  try {
    version = JSON.parse(fs.readFileSync(join(__dirname, "..", "package.json"), "utf8")).version;
  } catch {}
  return { top, dir: join(base, "tsvmm", `code-cache-${version}`, `node-${process.version}-${process.arch}`) };
}

/**
 * FNV-1a over the bytes as little-endian 32-bit words (then the tail bytes): names a source by its
 * content and checks a stored cache. Not zlib's CRC-32: node:zlib loads node:stream with it,
 * ~2 ms of every start-up, nor node:crypto, slower still to load. Each step is a bijection of the
 * state, so a change confined to one word always changes the hash; any other change is missed
 * with odds of 2^-32, as with a CRC.
 */
function hash32(bytes) {
  const n = bytes.length >>> 2;
  const words = (bytes.byteOffset & 3) === 0 ? new Int32Array(bytes.buffer, bytes.byteOffset, n) : new Int32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + n * 4));
  let h = 0x811c9dc5 | 0;
  // Words are read in the host's order: x86-64 only (KVM's x86 API), so little-endian.
  for (let i = 0; i < n; i++) h = Math.imul(h ^ words[i], 0x01000193);
  for (let i = n * 4; i < bytes.length; i++) h = Math.imul(h ^ bytes[i], 0x01000193);
  return h >>> 0;
}

/** Compiles CommonJS sources as Node does, with a code cache per source in `where.dir`. */
class CachedCompiler {
  constructor(fs, where) {
    this.fs = fs;
    this.vm = require("node:vm");
    this.where = where;
    this.used = new Set();
    this.toWrite = [];
  }

  /** The module wrapper function for `source` (a string or the file's bytes). */
  compile(source, filename) {
    const bytes = typeof source === "string" ? Buffer.from(source, "utf8") : source;
    const text = typeof source === "string" ? source : require("node:buffer").isAscii(bytes) ? bytes.toString("latin1") : bytes.toString("utf8");
    // V8 checks only the source's length against a cache: the content's hash and length name it.
    const file = `${basename(filename).replace(/[^\w.-]/g, "_")}-${hash32(bytes).toString(16).padStart(8, "0")}-${bytes.length}.v8`;
    this.used.add(file);
    let cachedData;
    try {
      // [hash32 of the data, LE][data]: V8 (Node 20) does not checksum a code cache, and a damaged
      // one can abort the process, so only data whose hash matches reaches V8.
      const stored = this.fs.readFileSync(join(this.where.dir, file));
      if (stored.length > 4 && stored.readUInt32LE(0) === hash32(stored.subarray(4))) cachedData = stored.subarray(4);
    } catch {}
    const script = new this.vm.Script(Module.wrap(text), {
      filename,
      cachedData,
      importModuleDynamically: this.vm.constants?.USE_MAIN_CONTEXT_DEFAULT_LOADER,
    });
    if (cachedData === undefined || script.cachedDataRejected === true) this.toWrite.push({ script, file });
    return script.runInThisContext();
  }

  /** Written at exit, so that the functions this run compiled lazily are in it too. */
  save() {
    if (this.toWrite.length === 0) return;
    const fs = this.fs;
    const { top, dir } = this.where;
    try {
      makeDirs(fs, top, dir);
      // Caches of other builds of this version (a work tree being edited) would pile up: those
      // not written for a day go. Not sooner: two builds run in turn must not evict each other.
      const dayAgo = Date.now() - 86_400_000;
      for (const f of fs.readdirSync(dir)) {
        if (!f.endsWith(".v8") || this.used.has(f)) continue;
        const at = join(dir, f);
        if (fs.statSync(at, { throwIfNoEntry: false })?.mtimeMs < dayAgo) fs.rmSync(at, { force: true });
      }
      for (const { script, file } of this.toWrite) {
        const data = script.createCachedData();
        const head = Buffer.alloc(4);
        head.writeUInt32LE(hash32(data));
        const tmp = join(dir, `${file}.${process.pid}.tmp`);
        fs.writeFileSync(tmp, Buffer.concat([head, data]), { mode: 0o600 });
        fs.renameSync(tmp, join(dir, file));
      }
    } catch {}
  }
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

/**
 * require() as Node 20 makes it for a CommonJS module, except that a request it already resolved
 * to a loaded module returns that module's exports without resolving it again: Node 20 resolves a
 * cached module afresh on every call (package.json and "exports" read each time), and bundles
 * require @tsvmm/abi once per source file: ~6 ms of every start-up.
 */
function makeRequire(mod) {
  const resolved = new Map();
  const require = (id) => {
    const filename = resolved.get(id);
    const cached = filename === undefined ? undefined : Module._cache[filename];
    if (cached?.loaded === true) return cached.exports;
    const exports = mod.require(id);
    if (filename === undefined && !Module.isBuiltin(id)) {
      try {
        resolved.set(id, Module._resolveFilename(id, mod, false));
      } catch {}
    }
    return exports;
  };
  require.resolve = (request, options) => Module._resolveFilename(request, mod, false, options);
  require.resolve.paths = (request) => Module._resolveLookupPaths(request, mod);
  require.main = mainModule;
  require.extensions = Module._extensions;
  require.cache = Module._cache;
  return require;
}

/** The bundle as Node loads it; dist/cli.cjs when a build made none (a build before the bin bundle). */
function plain() {
  try {
    return require(bundle);
  } catch (e) {
    if (e?.code !== "MODULE_NOT_FOUND" || require("node:fs").existsSync(bundle)) throw e;
    return require("../dist/cli.cjs");
  }
}

function load() {
  const env = process.env;
  if (env.TSVMM_NO_CODE_CACHE === "1" || env.NODE_DISABLE_COMPILE_CACHE === "1") return plain();
  // A policy manifest (Node 20's --experimental-policy) checks what Node compiles: leave it to Node.
  if (`${process.execArgv.join(" ")} ${env.NODE_OPTIONS ?? ""}`.includes("policy")) return plain();
  if (typeof Module.enableCompileCache === "function") {
    try {
      const where = cacheDir(require("node:fs"));
      if (where !== undefined) Module.enableCompileCache(where.dir);
    } catch {}
    return plain();
  }
  let compiler;
  let fn;
  try {
    const fs = require("node:fs");
    const where = cacheDir(fs);
    if (where === undefined) return plain();
    compiler = new CachedCompiler(fs, where);
    fn = compiler.compile(fs.readFileSync(bundle), bundle);
  } catch {
    return plain();
  }
  // From here on the bundle runs: an error is the bundle's own and is not retried.
  const mod = new Module(bundle, module);
  mod.filename = bundle;
  mod.paths = Module._nodeModulePaths(dirname(bundle));
  Module._cache[bundle] = mod;
  // The CommonJS packages the bundle requires go through the cache too: those it requires at load
  // (abi, kvm-backend, buffer-layout) and those it loads when a feature first needs them (gdbstub,
  // virtio, x86: see tsup.config.ts), so the hook stays for the process's life. Anything it does
  // not know how to wrap compiles as Node does.
  const compile = Module.prototype._compile;
  Module.prototype._compile = function (content, filename, format) {
    if ((format !== undefined && format !== "commonjs") || typeof content !== "string" || content.startsWith("#!")) {
      return compile.call(this, content, filename, format);
    }
    let wrapper;
    try {
      wrapper = compiler.compile(content, filename);
    } catch {
      return compile.call(this, content, filename, format);
    }
    return wrapper.call(this.exports, this.exports, makeRequire(this), this, filename, dirname(filename));
  };
  try {
    fn.call(mod.exports, mod.exports, makeRequire(mod), mod, bundle, dirname(bundle));
  } catch (e) {
    delete Module._cache[bundle];
    Module.prototype._compile = compile;
    throw e;
  }
  mod.loaded = true;
  process.once("exit", () => compiler.save());
  return mod.exports;
}

// Required rather than run (bench/vmm/phases.cjs): the loader alone.
if (require.main === module) load().run();
else module.exports = { load };
