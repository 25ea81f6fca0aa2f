#!/usr/bin/env node
// Fetch Debian's linux-image-cloud-amd64 kernel through apt, cache it under <repo>/.cache/debian-kernel/,
// and extract the bzImage (vmlinuz) and the vmlinux ELF inside it (the payload is lz4-compressed).
// Prints one JSON line: {"deb", "bzImage", "vmlinux", "package"}. Reuses the cache when present.
// Needs apt-get, dpkg-deb, tar and lz4 (installed through apt-get when missing and running as root).
// Usable from other packages: `node packages/elf-loader/scripts/fetch-debian-kernel.mjs`, or import
// { fetchDebianKernel } from this file.
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const repoRoot = resolve(here, "../../..");
const META = "linux-image-cloud-amd64";
const LZ4_LEGACY_MAGIC = 0x184c2102;

function run(cmd, args, opts = {}) {
  return execFileSync(cmd, args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"], ...opts });
}

function have(tool) {
  return spawnSync("sh", ["-c", `command -v ${tool}`], { stdio: "ignore" }).status === 0;
}

/** The versioned image package the metapackage depends on, e.g. linux-image-6.1.0-50-cloud-amd64. */
function imagePackage() {
  const show = run("apt-cache", ["show", META]);
  const m = /^Depends:.*?(linux-image-[0-9][^\s,(]*-cloud-amd64)/m.exec(show);
  if (!m) throw new Error(`apt-cache show ${META}: no linux-image-*-cloud-amd64 dependency`);
  return m[1];
}

function download(pkg, dir) {
  const attempt = () => spawnSync("apt-get", ["download", pkg], { cwd: dir, encoding: "utf8" });
  let r = attempt();
  if (r.status !== 0) {
    // A stale package index is the usual cause; refresh it once and retry.
    spawnSync("apt-get", ["update", "-qq"], { stdio: "ignore" });
    r = attempt();
  }
  if (r.status !== 0) throw new Error(`apt-get download ${pkg} failed: ${r.stderr}`);
}

function ensureLz4() {
  if (have("lz4")) return;
  const r = spawnSync("apt-get", ["install", "-y", "-qq", "lz4"], { encoding: "utf8", env: { ...process.env, DEBIAN_FRONTEND: "noninteractive" } });
  if (r.status !== 0 || !have("lz4")) throw new Error(`lz4 is missing and apt-get install lz4 failed: ${r.stderr}`);
}

/** Decompress the bzImage payload (setup header payload_offset/payload_length) with lz4. */
function extractVmlinux(bz) {
  const setupSects = bz[0x1f1] || 4;
  const start = (setupSects + 1) * 512 + bz.readUInt32LE(0x248);
  const length = bz.readUInt32LE(0x24c);
  const payload = bz.subarray(start, start + length);
  if (payload.readUInt32LE(0) !== LZ4_LEGACY_MAGIC) throw new Error(`bzImage payload magic ${payload.readUInt32LE(0).toString(16)} is not lz4 legacy`);
  // The kernel build appends the decompressed size (u32) after the lz4 stream; lz4 must not see it.
  const size = payload.readUInt32LE(payload.length - 4);
  ensureLz4();
  const out = execFileSync("lz4", ["-d", "-c"], { input: payload.subarray(0, payload.length - 4), maxBuffer: 512 << 20 });
  if (out.length !== size) throw new Error(`lz4 produced ${out.length} bytes, the payload trailer says ${size}`);
  return out;
}

export function fetchDebianKernel(cacheDir = join(repoRoot, ".cache", "debian-kernel")) {
  mkdirSync(cacheDir, { recursive: true });
  const bzImage = join(cacheDir, "vmlinuz");
  const vmlinux = join(cacheDir, "vmlinux");
  const stamp = join(cacheDir, "kernel.json");
  if (existsSync(stamp) && existsSync(bzImage) && existsSync(vmlinux)) return JSON.parse(readFileSync(stamp, "utf8"));
  let deb = readdirSync(cacheDir).find((f) => /^linux-image-[0-9].*-cloud-amd64_.*\.deb$/.test(f));
  let pkg = deb?.split("_")[0];
  if (deb === undefined) {
    pkg = imagePackage();
    download(pkg, cacheDir);
    deb = readdirSync(cacheDir).find((f) => f.startsWith(`${pkg}_`) && f.endsWith(".deb"));
    if (deb === undefined) throw new Error(`apt-get download ${pkg} left no .deb in ${cacheDir}`);
  }
  const debPath = join(cacheDir, deb);
  const tar = execFileSync("sh", ["-c", `dpkg-deb --fsys-tarfile "$1" | tar -xO --wildcards './boot/vmlinuz-*'`, "sh", debPath], { maxBuffer: 256 << 20 });
  if (tar.length < 1024) throw new Error(`${deb}: no ./boot/vmlinuz-* inside`);
  writeFileSync(`${bzImage}.tmp`, tar);
  renameSync(`${bzImage}.tmp`, bzImage);
  writeFileSync(`${vmlinux}.tmp`, extractVmlinux(tar));
  renameSync(`${vmlinux}.tmp`, vmlinux);
  const info = { deb: debPath, bzImage, vmlinux, package: pkg };
  writeFileSync(stamp, `${JSON.stringify(info)}\n`);
  return info;
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  console.log(JSON.stringify(fetchDebianKernel(process.argv[2])));
}
