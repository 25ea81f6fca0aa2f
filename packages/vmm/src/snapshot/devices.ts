import { type BusEntry, isStateful, type MmioBus, type PioBus, type Stateful } from "@tsvmm/devices";
import { decodeValue, encodeValue } from "./codec.js";
import { SnapshotError } from "./errors.js";
import type { DeviceStateRecord } from "./state.js";

interface Found {
  id: string;
  name: string;
  where: string;
  owner: object;
}

/**
 * Every device on the two buses, each once: a face that names a `stateOwner` stands for that
 * owner (i8042's two ports are one device). The id is the space and base of its lowest range,
 * which the same VM configuration reproduces exactly.
 */
export function findDevices(pio: PioBus, mmio: MmioBus): Found[] {
  const out: Found[] = [];
  const seen = new Set<object>();
  const walk = (space: "pio" | "mmio", entries: BusEntry[]) => {
    for (const e of entries) {
      const owner = e.device.stateOwner ?? e.device;
      if (seen.has(owner)) continue;
      seen.add(owner);
      const base = `0x${e.base.toString(16)}`;
      const name = (owner as { name?: unknown }).name;
      out.push({ id: `${space}:${base}`, name: typeof name === "string" ? name : e.device.name, where: `${space} ${base}+0x${e.length.toString(16)}`, owner });
    }
  };
  walk("pio", pio.entries());
  walk("mmio", mmio.entries());
  return out;
}

/** Save every device; refuses by name any device without saveState/restoreState (all of them at once). */
export function saveDevices(pio: PioBus, mmio: MmioBus): DeviceStateRecord[] {
  const found = findDevices(pio, mmio);
  const missing = found.filter((f) => !isStateful(f.owner));
  if (missing.length > 0) {
    throw new SnapshotError(
      "SNAPSHOT_DEVICE",
      `cannot save the VM: ${missing.map((m) => `device "${m.name}" (${m.where})`).join(", ")} ${missing.length === 1 ? "has" : "have"} no saveState/restoreState`,
    );
  }
  return found.map((f) => {
    let state: unknown;
    try {
      state = encodeValue((f.owner as Stateful).saveState(), `device ${f.name}`);
    } catch (e) {
      throw new SnapshotError("SNAPSHOT_DEVICE", `device "${f.name}" (${f.where}) failed to save its state: ${(e as Error).message}`, { cause: e });
    }
    return { id: f.id, name: f.name, state };
  });
}

/** Give each device of a freshly built VM its saved state; the two device sets must match exactly. */
export function restoreDevices(pio: PioBus, mmio: MmioBus, saved: readonly DeviceStateRecord[]): void {
  const found = findDevices(pio, mmio);
  const byId = new Map(found.map((f) => [f.id, f]));
  const savedIds = new Set(saved.map((s) => s.id));
  for (const s of saved) {
    const f = byId.get(s.id);
    if (f === undefined || f.name !== s.name) {
      throw new SnapshotError(
        "SNAPSHOT_DEVICE",
        `device "${s.name}" (${s.id}) was saved, but the restored VM has ${f === undefined ? "no device there" : `"${f.name}" there`}: give the same devices to the restore`,
      );
    }
  }
  for (const f of found) {
    if (!savedIds.has(f.id)) throw new SnapshotError("SNAPSHOT_DEVICE", `device "${f.name}" (${f.where}) is in the restored VM but not in the snapshot`);
  }
  for (const s of saved) {
    const f = byId.get(s.id)!;
    if (!isStateful(f.owner)) throw new SnapshotError("SNAPSHOT_DEVICE", `device "${f.name}" (${f.where}) has no restoreState`);
    try {
      f.owner.restoreState(decodeValue(s.state) as never);
    } catch (e) {
      throw new SnapshotError("SNAPSHOT_DEVICE", `device "${f.name}" (${f.where}) refused its saved state: ${(e as Error).message}`, { cause: e });
    }
  }
}
