import { CpuidError } from "./errors.js";
import { type CpuidTable, KVM_CPUID_FLAG_SIGNIFCANT_INDEX, type Vendor } from "./table.js";

/** How vCPUs are laid out: vCPU i is thread i % T of core (i / T) % C of socket i / (T*C). */
export interface Topology {
  vcpus: number;
  threadsPerCore: number;
  coresPerSocket: number;
  sockets: number;
}

export interface TopologyLayout {
  threadsPerCore?: number;
  coresPerSocket?: number;
  sockets?: number;
}

/** Where one vCPU sits, and the APIC id that encodes it. */
export interface VcpuPlace {
  thread: number;
  core: number;
  socket: number;
  apicId: number;
}

function posInt(v: unknown, what: string): number {
  if (typeof v !== "number" || !Number.isInteger(v) || v < 1) {
    throw new CpuidError("CPUID_INVALID_TOPOLOGY", `${what} must be a positive integer, got ${String(v)}`);
  }
  return v;
}

/** ceil(log2(n)): the width of an APIC id field that numbers n things. */
export function idWidth(n: number): number {
  return n <= 1 ? 0 : 32 - Math.clz32(n - 1);
}

/**
 * A topology from a vCPU count and an optional layout. Unspecified parts default to one thread per
 * core and one socket, with as many cores as needed. Refused (CPUID_INVALID_TOPOLOGY) when the
 * layout cannot hold the vCPUs or the APIC id would not fit 32 bits.
 */
export function makeTopology(vcpus: number, layout: TopologyLayout = {}): Topology {
  posInt(vcpus, "vcpus");
  const threadsPerCore = posInt(layout.threadsPerCore ?? 1, "threadsPerCore");
  const sockets = posInt(layout.sockets ?? 1, "sockets");
  const coresPerSocket = posInt(
    layout.coresPerSocket ?? Math.ceil(vcpus / (threadsPerCore * sockets)),
    "coresPerSocket",
  );
  if (threadsPerCore * coresPerSocket * sockets < vcpus) {
    throw new CpuidError(
      "CPUID_INVALID_TOPOLOGY",
      `${vcpus} vCPUs do not fit ${sockets} socket(s) x ${coresPerSocket} core(s) x ${threadsPerCore} thread(s)`,
    );
  }
  if (threadsPerCore > 0xffff || threadsPerCore * coresPerSocket > 0xffff) {
    throw new CpuidError("CPUID_INVALID_TOPOLOGY", "more than 65535 logical processors per level (leaf 0xB EBX[15:0])");
  }
  if (idWidth(threadsPerCore) + idWidth(coresPerSocket) + idWidth(sockets) > 32) {
    throw new CpuidError("CPUID_INVALID_TOPOLOGY", "the x2APIC id of this layout does not fit 32 bits");
  }
  return { vcpus, threadsPerCore, coresPerSocket, sockets };
}

/** Thread/core/socket of vCPU `index` and its x2APIC id (thread, core and socket fields packed). */
export function vcpuPlace(topo: Topology, index: number): VcpuPlace {
  if (!Number.isInteger(index) || index < 0 || index >= topo.vcpus) {
    throw new CpuidError("CPUID_INVALID_TOPOLOGY", `vCPU index ${index} is not in [0, ${topo.vcpus})`);
  }
  const t = topo.threadsPerCore;
  const c = topo.coresPerSocket;
  const thread = index % t;
  const core = Math.floor(index / t) % c;
  const socket = Math.floor(index / (t * c));
  const ts = idWidth(t);
  const cs = idWidth(c);
  const apicId = ((socket * 2 ** (ts + cs)) + (core << ts) + thread) >>> 0;
  return { thread, core, socket, apicId };
}

function update(table: CpuidTable, leaf: number, subleaf: number, f: (r: { eax: number; ebx: number; ecx: number; edx: number }) => void) {
  const cur = table.get(leaf, subleaf);
  if (cur === undefined) return;
  f(cur);
  table.set(leaf, subleaf, { eax: cur.eax >>> 0, ebx: cur.ebx >>> 0, ecx: cur.ecx >>> 0, edx: cur.edx >>> 0 });
}

/** Replaces a leaf with the x2APIC levels SMT and Core (and the terminating invalid level). */
function writeLevels(table: CpuidTable, leaf: number, topo: Topology): void {
  const ts = idWidth(topo.threadsPerCore);
  const cs = idWidth(topo.coresPerSocket);
  table.delete(leaf);
  const flags = KVM_CPUID_FLAG_SIGNIFCANT_INDEX;
  // EDX (x2APIC id) is per vCPU; applyVcpuIds fills it.
  table.set(leaf, 0, { eax: ts, ebx: topo.threadsPerCore, ecx: (1 << 8) | 0, edx: 0 }, { flags });
  table.set(leaf, 1, { eax: ts + cs, ebx: topo.threadsPerCore * topo.coresPerSocket, ecx: (2 << 8) | 1, edx: 0 }, { flags });
  table.set(leaf, 2, { eax: 0, ebx: 0, ecx: 2, edx: 0 }, { flags });
}

/**
 * Writes the topology fields that are the same on all vCPUs: leaf 1 EBX[23:16] and EDX.HTT; leaf
 * 0xB (always; CPUID.0:EAX is raised to 0xB if lower) and 0x1F (when the table has it or
 * CPUID.0:EAX reaches it); on AMD, 0x80000001 ECX.CmpLegacy and 0x80000008 ECX[15:12,7:0].
 * Cache sharing fields are applyCacheTopology's.
 */
export function applyTopology(table: CpuidTable, topo: Topology, vendor: Vendor = table.vendor): CpuidTable {
  const ts = idWidth(topo.threadsPerCore);
  const cs = idWidth(topo.coresPerSocket);
  const perPackage = topo.threadsPerCore * topo.coresPerSocket;

  update(table, 1, 0, (r) => {
    r.ebx = (r.ebx & ~0x00ff0000) | (Math.min(255, 2 ** (ts + cs)) << 16);
    r.edx = perPackage > 1 ? r.edx | (1 << 28) : r.edx & ~(1 << 28);
  });
  const max = table.maxBasicLeaf;
  if (max !== undefined && max < 0xb) table.setRegister(0, 0, "eax", 0xb);
  writeLevels(table, 0xb, topo);
  if (table.hasLeaf(0x1f) || (table.maxBasicLeaf ?? 0) >= 0x1f) writeLevels(table, 0x1f, topo);

  if (vendor === "amd") {
    update(table, 0x80000001, 0, (r) => {
      r.ecx = perPackage > 1 ? r.ecx | 2 : r.ecx & ~2;
    });
    update(table, 0x80000008, 0, (r) => {
      r.ecx = (r.ecx & ~0xf0ff) | ((ts + cs) << 12) | Math.min(255, perPackage - 1);
    });
  }
  return table;
}

/**
 * Writes the cache-sharing fields: leaf 4 EAX[31:26] (addressable core ids - 1) and EAX[25:14]
 * (addressable logical processors sharing the cache - 1) of every cache present, and on AMD
 * 0x8000001D EAX[25:14]. L1 and L2 are shared by the threads of a core, L3 by the package.
 */
export function applyCacheTopology(table: CpuidTable, topo: Topology, vendor: Vendor = table.vendor): CpuidTable {
  const ts = idWidth(topo.threadsPerCore);
  const cs = idWidth(topo.coresPerSocket);
  const perPackage = topo.threadsPerCore * topo.coresPerSocket;
  for (const sub of table.subleaves(4)) {
    update(table, 4, sub, (r) => {
      if ((r.eax & 0x1f) === 0) return;
      const level = (r.eax >>> 5) & 7;
      const sharing = level <= 2 ? 2 ** ts : 2 ** (ts + cs);
      r.eax = (r.eax & 0x3fff) | (Math.min(63, 2 ** cs - 1) << 26) | (Math.min(0xfff, sharing - 1) << 14);
    });
  }
  if (vendor === "amd") {
    for (const sub of table.subleaves(0x8000001d)) {
      update(table, 0x8000001d, sub, (r) => {
        if ((r.eax & 0x1f) === 0) return;
        const level = (r.eax >>> 5) & 7;
        const sharing = level <= 2 ? topo.threadsPerCore : perPackage;
        r.eax = (r.eax & ~(0xfff << 14)) | ((sharing - 1) << 14);
      });
    }
  }
  return table;
}

/**
 * Writes the per-vCPU fields: leaf 1 EBX[31:24] (initial APIC id; KVM does not fill it), leaf
 * 0xB/0x1F EDX (x2APIC id) on every subleaf, and on AMD 0x8000001E (extended APIC id, core id,
 * threads per core, node id) when the table has that leaf or reaches it.
 */
export function applyVcpuIds(table: CpuidTable, topo: Topology, index: number, vendor: Vendor = table.vendor): CpuidTable {
  const p = vcpuPlace(topo, index);
  update(table, 1, 0, (r) => {
    r.ebx = (r.ebx & 0x00ffffff) | ((p.apicId & 0xff) << 24);
  });
  for (const leaf of [0xb, 0x1f]) {
    for (const sub of table.subleaves(leaf)) update(table, leaf, sub, (r) => {
        r.edx = p.apicId;
      });
  }
  if (vendor === "amd" && (table.hasLeaf(0x8000001e) || (table.maxExtendedLeaf ?? 0) >= 0x8000001e)) {
    table.set(0x8000001e, 0, {
      eax: p.apicId,
      ebx: ((topo.threadsPerCore - 1) << 8) | (p.core & 0xff),
      ecx: p.socket & 0xff,
      edx: 0,
    });
  }
  return table;
}
