import {
  type GuestMemory, HC_BLOCK_ALIGN, HC_BLOCK_SIZE, HC_CONSOLE_MAX, 
  HC_MAGIC, HC_NAME_MAX, HC_PORT, HC_SIGNATURE, HC_SIGNATURE_PORT,HC_VERSION_MAX, HC_VERSION_MIN, HcCall, HcRequestLayout, HcStatus,
} from "@tsvmm/abi";
import type { AccessContext, Device, RegisterTarget } from "./bus.js";
import { DeviceError } from "./errors.js";
import { type Stateful, stateCheck } from "./stateful.js";

/** The doorbell's port range: HC_PORT (4 bytes) then HC_SIGNATURE_PORT (4 bytes). */
export const HYPERCALL_PORT = HC_PORT;
export const HYPERCALL_SIZE = HC_SIGNATURE_PORT + 4 - HC_PORT;
const SIGNATURE_OFFSET = HC_SIGNATURE_PORT - HC_PORT;
const RESULT_OFFSET = HcRequestLayout.offsetOf("result");

/** What one doorbell write did. `exitCode` is set when the guest asked to stop. */
export interface HypercallOutcome {
  readonly vcpu: number;
  readonly status: number;
  /** The call number, or undefined when the block could not be read. */
  readonly call: number | undefined;
  readonly exitCode: number | undefined;
}

/** What the VMM does on behalf of the guest. Every method may be left out; the call then still succeeds. */
export interface HypercallHost {
  console?(bytes: Buffer, vcpu: number): void;
  report?(name: string, pass: boolean, vcpu: number): void;
  value?(name: string, value: bigint, vcpu: number): void;
  exit?(code: number, vcpu: number): void;
  /** Sees every doorbell ring after it was carried out (for tests and traces). */
  call?(outcome: HypercallOutcome): void;
}

/**
 * The tsvmm hypercall doorbell (ABI in @tsvmm/abi's README) as a device on the PIO bus: an OUT of a
 * block address to HC_PORT carries out the call against guest memory; an IN from HC_PORT reads
 * the status of that vCPU's last call; an IN from HC_SIGNATURE_PORT reads the signature.
 * Guest input never makes it throw: every bad argument becomes a status written back.
 */
export interface HypercallState {
  [key: string]: number[];
  /** Status of each vCPU's last call (what an IN from HC_PORT returns). */
  status: number[];
}

export class HypercallDevice implements Device, Stateful<HypercallState> {
  readonly name = "hypercall";
  private readonly status: number[] = [];
  private readonly decoder = new TextDecoder("utf-8", { fatal: false });

  constructor(
    private readonly memory: GuestMemory,
    private readonly host: HypercallHost = {},
  ) {}

  attach(bus: RegisterTarget): void {
    bus.register(HYPERCALL_PORT, HYPERCALL_SIZE, this);
  }

  /** Status of vCPU `vcpu`'s last call (what a 32-bit IN from HC_PORT returns, as a signed number). */
  lastStatus(vcpu: number): number {
    return this.status[vcpu] ?? HcStatus.OK;
  }

  read(offset: number, data: Buffer, ctx: AccessContext): void {
    if (data.length !== 4 || (offset !== 0 && offset !== SIGNATURE_OFFSET)) {
      data.fill(0xff);
      return;
    }
    data.writeUInt32LE(offset === 0 ? this.lastStatus(ctx.vcpu) >>> 0 : HC_SIGNATURE, 0);
  }

  write(offset: number, data: Buffer, ctx: AccessContext): void {
    if (offset !== 0) return;
    const vcpu = ctx.vcpu;
    if (data.length !== 4) {
      this.finish(vcpu, HcStatus.E_ACCESS, undefined, undefined);
      return;
    }
    this.doorbell(data.readUInt32LE(0), vcpu);
  }

  /** Carry out the call whose block is at guest-physical `gpa` for vCPU `vcpu`. */
  doorbell(gpa: number, vcpu: number): HypercallOutcome {
    if (gpa % HC_BLOCK_ALIGN !== 0 || !this.memory.contains(gpa, HC_BLOCK_SIZE)) {
      return this.finish(vcpu, HcStatus.E_BADBLOCK, undefined, undefined);
    }
    const req = this.memory.readObj(HcRequestLayout, gpa);
    if (req.magic !== HC_MAGIC) return this.finish(vcpu, HcStatus.E_BADBLOCK, undefined, undefined);
    const { version, call } = req;
    const [a0 = 0n, a1 = 0n, a2 = 0n] = req.arg;
    let status: number;
    let exitCode: number | undefined;
    if (call === HcCall.VERSION) {
      // Negotiation is accepted whatever version the block carries: that is its purpose.
      status = a0 >= BigInt(HC_VERSION_MIN) ? Number(a0 < BigInt(HC_VERSION_MAX) ? a0 : BigInt(HC_VERSION_MAX)) : HcStatus.E_VERSION;
    } else if (version < HC_VERSION_MIN || version > HC_VERSION_MAX) {
      status = HcStatus.E_VERSION;
    } else {
      switch (call) {
        case HcCall.CONSOLE_WRITE: {
          const bytes = a1 > BigInt(HC_CONSOLE_MAX) ? null : this.guestBytes(a0, Number(a1));
          status = bytes === null ? HcStatus.E_INVAL : bytes === undefined ? HcStatus.E_FAULT : bytes.length;
          if (bytes) this.host.console?.(bytes, vcpu);
          break;
        }
        case HcCall.REPORT:
        case HcCall.REPORT_VALUE: {
          const bad = a1 > BigInt(HC_NAME_MAX) || (call === HcCall.REPORT && a2 > 1n);
          const bytes = bad ? null : this.guestBytes(a0, Number(a1));
          status = bytes === null ? HcStatus.E_INVAL : bytes === undefined ? HcStatus.E_FAULT : HcStatus.OK;
          if (bytes) {
            const name = this.decoder.decode(bytes);
            if (call === HcCall.REPORT) this.host.report?.(name, a2 === 1n, vcpu);
            else this.host.value?.(name, a2, vcpu);
          }
          break;
        }
        case HcCall.EXIT:
          if (a0 > 255n) {
            status = HcStatus.E_INVAL;
          } else {
            exitCode = Number(a0);
            status = HcStatus.OK;
          }
          break;
        default:
          status = HcStatus.E_NOSYS;
      }
    }
    this.memory.slice(gpa + RESULT_OFFSET, 8).writeBigInt64LE(BigInt(status));
    const outcome = this.finish(vcpu, status, call, exitCode);
    // Last, so a host that stops the VM on EXIT sees the result already written.
    if (exitCode !== undefined) this.host.exit?.(exitCode, vcpu);
    return outcome;
  }

  /** Statuses per vCPU, for a snapshot. */
  saveState(): HypercallState {
    const status: number[] = [];
    for (let i = 0; i < this.status.length; i++) status.push(this.status[i] ?? HcStatus.OK);
    return { status };
  }

  restoreState(s: HypercallState): void {
    const o = stateCheck.object(this.name, s);
    const list = o.status;
    if (!Array.isArray(list) || list.length > 0x10000 || !list.every((v) => Number.isInteger(v) && v >= -0x80000000 && v <= 0x7fffffff)) {
      throw new DeviceError("DEVICE_BAD_STATE", `${this.name}: saved state field "status" must be 32-bit statuses`);
    }
    this.status.length = 0;
    for (const [i, v] of (list as number[]).entries()) this.status[i] = v;
  }

  private guestBytes(gpa: bigint, length: number): Buffer | undefined {
    if (gpa > BigInt(Number.MAX_SAFE_INTEGER)) return undefined;
    const a = Number(gpa);
    if (!this.memory.contains(a, length)) return undefined;
    return Buffer.from(this.memory.slice(a, length));
  }

  private finish(vcpu: number, status: number, call: number | undefined, exitCode: number | undefined): HypercallOutcome {
    this.status[vcpu] = status;
    const outcome = { vcpu, status, call, exitCode };
    this.host.call?.(outcome);
    return outcome;
  }
}
