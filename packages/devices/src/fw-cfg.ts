import type { Device } from "./bus.js";
import { DeviceError } from "./errors.js";
import { type Stateful, stateCheck } from "./stateful.js";

/** Selector (16-bit, write) at this port, data (8-bit, read) at the next: register 2 ports here. */
export const FW_CFG_PORT = 0x510;
export const FW_CFG_SIZE = 2;

export const FW_CFG_SIGNATURE = 0x00;
export const FW_CFG_ID = 0x01;
export const FW_CFG_RAM_SIZE = 0x03;
export const FW_CFG_NB_CPUS = 0x05;
export const FW_CFG_MAX_CPUS = 0x0f;

export interface FwCfgOptions {
  name?: string;
  /**
   * Answer item 0 with "QEMU" and item 1 with 1 (traditional I/O interface, no DMA). Default true:
   * the items we serve follow QEMU's layout, so the signature is honest. false: they read as zeros.
   */
  signature?: boolean;
  /** RAM size in bytes, served as item 0x03 (u64, little-endian); kvm-unit-tests sizes its heap by it. */
  ramSize?: number | bigint;
  /** vCPU count, served as items 0x05 and 0x0f (u16); kvm-unit-tests starts that many CPUs. */
  cpus?: number;
  /** Further items by selector. */
  items?: ReadonlyMap<number, Uint8Array>;
}

/**
 * A minimal QEMU fw_cfg, traditional port interface only (no DMA at 0x514, no file directory
 * contents). Writing the selector rewinds the data offset; every data read returns the next byte
 * of the selected item, and 0 past its end or for items it does not have ("no such item").
 */
/** Items, the selector and the read offset (JSON; item bytes hex, keyed by selector). */
export interface FwCfgState {
  [key: string]: number | boolean | { [selector: string]: string };
  items: { [selector: string]: string };
  selector: number;
  /** False until the guest first writes the selector (reads then return 0, not item 0). */
  selected: boolean;
  offset: number;
}

export class FwCfg implements Device, Stateful<FwCfgState> {
  readonly name: string;
  private readonly items = new Map<number, Uint8Array>();
  private selected: Uint8Array | undefined;
  private offset = 0;
  /** The last selector written. */
  selector = 0;

  constructor(options: FwCfgOptions = {}) {
    this.name = options.name ?? "fw-cfg";
    if (options.signature ?? true) {
      this.setItem(FW_CFG_SIGNATURE, Buffer.from("QEMU", "latin1"));
      this.setItem(FW_CFG_ID, u32(1));
    }
    if (options.ramSize !== undefined) {
      const r = BigInt(options.ramSize);
      if (r < 0n || r >= 2n ** 64n) throw new DeviceError("DEVICE_INVALID_OPTION", `fw_cfg ramSize ${r} does not fit in 64 bits`);
      const b = Buffer.alloc(8);
      b.writeBigUInt64LE(r);
      this.setItem(FW_CFG_RAM_SIZE, b);
    }
    if (options.cpus !== undefined) {
      const n = options.cpus;
      if (!Number.isInteger(n) || n < 1 || n > 0xffff) {
        throw new DeviceError("DEVICE_INVALID_OPTION", `fw_cfg cpus must be an integer 1..65535, got ${String(n)}`);
      }
      const b = Buffer.alloc(2);
      b.writeUInt16LE(n);
      this.setItem(FW_CFG_NB_CPUS, b);
      this.setItem(FW_CFG_MAX_CPUS, b);
    }
    for (const [k, v] of options.items ?? []) this.setItem(k, v);
  }

  /** Sets (copies) the bytes of item `selector`. */
  setItem(selector: number, bytes: Uint8Array): void {
    if (!Number.isInteger(selector) || selector < 0 || selector > 0xffff) {
      throw new DeviceError("DEVICE_INVALID_OPTION", `fw_cfg selector must be 0..0xffff, got ${String(selector)}`);
    }
    this.items.set(selector, Uint8Array.from(bytes));
  }

  saveState(): FwCfgState {
    const items: { [selector: string]: string } = {};
    for (const [k, v] of this.items) items[String(k)] = Buffer.from(v).toString("hex");
    return { items, selector: this.selector, selected: this.selected !== undefined, offset: this.offset };
  }

  restoreState(state: FwCfgState): void {
    const o = stateCheck.object(this.name, state);
    const selector = stateCheck.int(this.name, o, "selector", 0, 0xffff);
    const offset = stateCheck.int(this.name, o, "offset", 0, Number.MAX_SAFE_INTEGER);
    const selected = stateCheck.bool(this.name, o, "selected");
    const raw = stateCheck.object(this.name, o.items);
    const items = new Map<number, Uint8Array>();
    for (const k of Object.keys(raw)) {
      const sel = /^\d+$/.test(k) ? Number(k) : -1;
      if (sel < 0 || sel > 0xffff) throw new DeviceError("DEVICE_BAD_STATE", `${this.name}: item selector ${JSON.stringify(k)} is not 0..65535`);
      items.set(sel, stateCheck.hex(this.name, raw, k, 2 ** 24));
    }
    this.items.clear();
    for (const [k, v] of items) this.items.set(k, v);
    this.selector = selector;
    this.selected = selected ? this.items.get(selector) : undefined;
    this.offset = offset;
  }

  read(offset: number, data: Buffer): void {
    data.fill(0);
    if (offset !== 1) return;
    for (let i = 0; i < data.length; i++) {
      const item = this.selected;
      data[i] = item !== undefined && this.offset < item.length ? item[this.offset]! : 0;
      this.offset++;
    }
  }

  write(offset: number, data: Buffer): void {
    // Data-port writes were dropped from fw_cfg long ago; only the selector listens.
    if (offset !== 0) return;
    this.selector = data.length >= 2 ? data.readUInt16LE(0) : data[0]!;
    this.selected = this.items.get(this.selector);
    this.offset = 0;
  }
}

function u32(v: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(v);
  return b;
}
