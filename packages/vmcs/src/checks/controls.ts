import { CR4, ENTRY, EXIT, INTR_INFO, PIN, PROC, PROC2, PROC3, VMFUNC } from "../bits/index.js";
import { checkEptp, type EptpViolation } from "../eptp.js";
import { type Ctx, hex, hi, inPhysHi, lo, pageOkSlot, readMem, report, SLOT } from "./context.js";

function allowed(ctx: Ctx, id: string, name: string, value: number, must1: number, may1: number): void {
  const missing = (must1 & ~value) >>> 0;
  const extra = (value & ~may1) >>> 0;
  if (missing || extra) {
    const parts = [];
    if (missing) parts.push(`bits ${hex(missing)} must be 1`);
    if (extra) parts.push(`bits ${hex(extra)} must be 0`);
    report(ctx, id, `${name}=${hex(value >>> 0)}: ${parts.join(", ")}`);
  }
}

function msrArea(ctx: Ctx, id: string, countName: string, count: number, addrName: string, slot: number): void {
  if (count === 0) return;
  const aLo = lo(ctx, slot);
  const aHi = hi(ctx, slot);
  // With the start below MAXPHYADDR ≤ 52 bits, the area's end is exact as a double (< 2^53).
  const ok = (aLo & 0xf) === 0 && inPhysHi(ctx, aHi) && Math.floor((aHi * 0x1_0000_0000 + aLo + count * 16 - 1) / 0x1_0000_0000) >>> ctx.k.physShift === 0;
  if (!ok) reportMsrArea(ctx, id, countName, count, addrName, slot);
}

function reportMsrArea(ctx: Ctx, id: string, countName: string, count: number, addrName: string, slot: number): void {
  const addr = ctx.st.getSlot(slot);
  report(ctx, id, `${addrName}=${hex(addr)} with ${countName}=${count}: area must be 16-byte aligned and end below 2^${ctx.maxPhys}`);
}

function page(ctx: Ctx, id: string, name: string, slot: number): void {
  if (!pageOkSlot(ctx, slot)) report(ctx, id, `${name}=${hex(ctx.st.getSlot(slot))}: must be 4-KByte aligned and below 2^${ctx.maxPhys}`);
}

/**
 * checkEptp's answer for the last EPTP value seen per prepared caps: the rule is a pure function
 * of (EPTP, caps), and a VMM checks the same EPTP over and over.
 */
/** CR4.FRED (bit 32) in the high word. */
const CR4_FRED_HI = Number(CR4.FRED >> 32n);
/** Control bits defined as BigInt that the checks test on the low word. */
const VMFUNC_EPTP_SWITCHING = Number(VMFUNC.EPTP_SWITCHING);
const PROC3_HLAT = Number(PROC3.ENABLE_HLAT);
const PROC3_IPI_VIRT = Number(PROC3.IPI_VIRTUALIZATION);

const EPTP_MEMO = new WeakMap<object, { lo: number; hi: number; v: EptpViolation[] }>();

/** SDM §26.2.1: checks on VM-execution, VM-exit and VM-entry control fields. */
export function checkControls(ctx: Ctx): void {
  const { st, caps, k } = ctx;
  const { pin, proc, proc2, exit, entry } = ctx;

  // §26.2.1.1 pin-based
  allowed(ctx, "CTRL.PIN.ALLOWED_BITS", "PIN_BASED_VM_EXEC_CONTROL", pin, k.pinMust1, k.pinMay1);
  if (pin & PIN.VIRTUAL_NMIS && !(pin & PIN.NMI_EXITING)) {
    report(ctx, "CTRL.PIN.VNMI_REQUIRES_NMI_EXIT", `PIN_BASED_VM_EXEC_CONTROL=${hex(pin)}: virtual NMIs (bit 5) without NMI exiting (bit 3)`);
  }
  if (pin & PIN.PROCESS_POSTED_INTR) {
    if (!(proc2 & PROC2.VIRTUAL_INTR_DELIVERY)) {
      report(ctx, "CTRL.PIN.PI_REQUIRES_VID", `PIN_BASED_VM_EXEC_CONTROL=${hex(pin)}: process posted interrupts without virtual-interrupt delivery`);
    }
    if (!(exit & EXIT.ACK_INTR_ON_EXIT)) {
      report(ctx, "CTRL.PIN.PI_REQUIRES_ACK_ON_EXIT", `VM_EXIT_CONTROLS=${hex(exit)}: process posted interrupts without acknowledge interrupt on exit (bit 15)`);
    }
    const nv = lo(ctx, SLOT.PI_NV);
    if (nv & 0xff00) report(ctx, "CTRL.PIN.PI_VECTOR", `POSTED_INTR_NV=${hex(nv)}: bits 15:8 must be 0`);
    if ((lo(ctx, SLOT.PI_DESC) & 0x3f) !== 0 || !inPhysHi(ctx, hi(ctx, SLOT.PI_DESC))) {
      const d = st.getSlot(SLOT.PI_DESC);
      report(ctx, "CTRL.PIN.PI_DESC_ADDR", `POSTED_INTR_DESC_ADDR=${hex(d)}: must be 64-byte aligned and below 2^${ctx.maxPhys}`);
    }
  }

  // §26.2.1.1 primary processor-based
  allowed(ctx, "CTRL.PROC.ALLOWED_BITS", "CPU_BASED_VM_EXEC_CONTROL", proc, k.procMust1, k.procMay1);
  const cr3Count = lo(ctx, SLOT.CR3_COUNT);
  if (cr3Count > k.cr3TargetCount) {
    report(ctx, "CTRL.PROC.CR3_TARGET_COUNT", `CR3_TARGET_COUNT=${cr3Count}: exceeds ${k.cr3TargetCount} (IA32_VMX_MISC[24:16])`);
  }
  if (proc & PROC.USE_IO_BITMAPS) {
    if (!pageOkSlot(ctx, SLOT.IO_A) || !pageOkSlot(ctx, SLOT.IO_B)) {
      const a = st.getSlot(SLOT.IO_A);
      const b = st.getSlot(SLOT.IO_B);
      report(ctx, "CTRL.PROC.IO_BITMAP_ADDR", `IO_BITMAP_A=${hex(a)}, IO_BITMAP_B=${hex(b)}: must be 4-KByte aligned and below 2^${ctx.maxPhys}`);
    }
  }
  if (proc & PROC.USE_MSR_BITMAPS) page(ctx, "CTRL.PROC.MSR_BITMAP_ADDR", "MSR_BITMAP", SLOT.MSR_BITMAP);
  if (proc & PROC.USE_TPR_SHADOW) {
    page(ctx, "CTRL.PROC.VAPIC_ADDR", "VIRTUAL_APIC_PAGE_ADDR", SLOT.VAPIC);
    const thr = lo(ctx, SLOT.TPR_THRESHOLD);
    if (!(proc2 & PROC2.VIRTUAL_INTR_DELIVERY)) {
      if (thr & 0xffff_fff0) report(ctx, "CTRL.PROC.TPR_THRESHOLD_RSVD", `TPR_THRESHOLD=${hex(thr)}: bits 31:4 must be 0`);
      if (!(proc2 & PROC2.VIRTUALIZE_APIC_ACCESSES) && ctx.env.memory !== undefined && pageOkSlot(ctx, SLOT.VAPIC)) {
        const vapic = st.getSlot(SLOT.VAPIC);
        const vtpr = readMem(ctx, vapic + 0x80n, 1);
        if (vtpr !== undefined && (thr & 0xf) > Number((vtpr >> 4n) & 0xfn)) {
          report(ctx, "CTRL.PROC.TPR_THRESHOLD_VS_VTPR", `TPR_THRESHOLD=${hex(thr)}: bits 3:0 exceed VTPR[7:4] (${hex(vtpr)} at ${hex(vapic + 0x80n)})`);
        }
      }
    }
  } else if (proc2 & (PROC2.VIRTUALIZE_X2APIC_MODE | PROC2.APIC_REGISTER_VIRT | PROC2.VIRTUAL_INTR_DELIVERY)) {
    report(ctx, "CTRL.PROC.NO_TPR_SHADOW_NO_APICV", `SECONDARY_VM_EXEC_CONTROL=${hex(proc2)}: x2APIC/APIC-register virtualization or VID without use TPR shadow`);
  }
  if (proc & PROC.NMI_WINDOW_EXITING && !(pin & PIN.VIRTUAL_NMIS)) {
    report(ctx, "CTRL.PROC.NMI_WINDOW_REQUIRES_VNMI", `CPU_BASED_VM_EXEC_CONTROL=${hex(proc)}: NMI-window exiting without virtual NMIs`);
  }

  // §26.2.1.1 secondary processor-based (only when activated; otherwise treated as 0)
  if (proc & PROC.ACTIVATE_SECONDARY_CONTROLS) {
    allowed(ctx, "CTRL.PROC2.ALLOWED_BITS", "SECONDARY_VM_EXEC_CONTROL", proc2, k.proc2Must1, k.proc2May1);
  }
  const ept = (proc2 & PROC2.ENABLE_EPT) !== 0;
  if (proc2 & PROC2.VIRTUALIZE_APIC_ACCESSES) page(ctx, "CTRL.PROC2.APIC_ACCESS_ADDR", "APIC_ACCESS_ADDR", SLOT.APIC_ACCESS);
  if (proc2 & PROC2.VIRTUALIZE_X2APIC_MODE && proc2 & PROC2.VIRTUALIZE_APIC_ACCESSES) {
    report(ctx, "CTRL.PROC2.X2APIC_EXCLUDES_APIC_ACCESS", `SECONDARY_VM_EXEC_CONTROL=${hex(proc2)}: virtualize x2APIC mode with virtualize APIC accesses`);
  }
  if (proc2 & PROC2.VIRTUAL_INTR_DELIVERY && !(pin & PIN.EXT_INTR_EXITING)) {
    report(ctx, "CTRL.PROC2.VID_REQUIRES_EXTINT_EXIT", `PIN_BASED_VM_EXEC_CONTROL=${hex(pin)}: virtual-interrupt delivery without external-interrupt exiting`);
  }
  if (proc2 & PROC2.ENABLE_VPID && lo(ctx, SLOT.VPID) === 0) {
    report(ctx, "CTRL.PROC2.VPID_NONZERO", "VIRTUAL_PROCESSOR_ID=0x0: must not be 0 with enable VPID");
  }
  if (ept) {
    const eLo = lo(ctx, SLOT.EPTP);
    const eHi = hi(ctx, SLOT.EPTP);
    let memo = EPTP_MEMO.get(k);
    if (memo === undefined || memo.lo !== eLo || memo.hi !== eHi) {
      memo = { lo: eLo, hi: eHi, v: checkEptp(st.getSlot(SLOT.EPTP), caps) };
      EPTP_MEMO.set(k, memo);
    }
    for (const v of memo.v) report(ctx, v.id, v.message);
  }
  if (proc2 & PROC2.UNRESTRICTED_GUEST && !ept) {
    report(ctx, "CTRL.PROC2.UG_REQUIRES_EPT", `SECONDARY_VM_EXEC_CONTROL=${hex(proc2)}: unrestricted guest without enable EPT`);
  }
  if (proc2 & PROC2.MODE_BASED_EPT_EXEC && !ept) {
    report(ctx, "CTRL.PROC2.MBEC_REQUIRES_EPT", `SECONDARY_VM_EXEC_CONTROL=${hex(proc2)}: mode-based execute control without enable EPT`);
  }
  if (proc2 & PROC2.ENABLE_PML) {
    if (!ept || !pageOkSlot(ctx, SLOT.PML_ADDR)) report(ctx, "CTRL.PROC2.PML", `PML_ADDRESS=${hex(st.getSlot(SLOT.PML_ADDR))}: PML needs enable EPT and a 4-KByte aligned address below 2^${ctx.maxPhys}`);
  }
  if (proc2 & PROC2.SUBPAGE_WRITE_PERMISSIONS) {
    if (!ept || !pageOkSlot(ctx, SLOT.SPPTP)) report(ctx, "CTRL.PROC2.SPP", `SPP_TABLE_POINTER=${hex(st.getSlot(SLOT.SPPTP))}: SPP needs enable EPT and a 4-KByte aligned SPPTP below 2^${ctx.maxPhys}`);
  }
  if (proc2 & PROC2.ENABLE_VMFUNC) {
    const fLo = lo(ctx, SLOT.VMFUNC);
    if (fLo & ~k.vmfunc.lo || hi(ctx, SLOT.VMFUNC) & ~k.vmfunc.hi) {
      const f = st.getSlot(SLOT.VMFUNC);
      const bad = f & ~caps.msrs.IA32_VMX_VMFUNC;
      report(ctx, "CTRL.PROC2.VMFUNC_ALLOWED_BITS", `VM_FUNCTION_CONTROL=${hex(f)}: bits ${hex(bad)} not allowed by IA32_VMX_VMFUNC`);
    }
    if (fLo & VMFUNC_EPTP_SWITCHING) {
      if (!ept || !pageOkSlot(ctx, SLOT.EPTP_LIST)) {
        const l = st.getSlot(SLOT.EPTP_LIST);
        report(ctx, "CTRL.PROC2.EPTP_SWITCHING", `EPTP_LIST_ADDRESS=${hex(l)}: EPTP switching needs enable EPT and a 4-KByte aligned list below 2^${ctx.maxPhys}`);
      }
    }
  }
  if (proc2 & PROC2.VMCS_SHADOWING) {
    if (!pageOkSlot(ctx, SLOT.VMREAD_BITMAP) || !pageOkSlot(ctx, SLOT.VMWRITE_BITMAP)) {
      const r = st.getSlot(SLOT.VMREAD_BITMAP);
      const w = st.getSlot(SLOT.VMWRITE_BITMAP);
      report(ctx, "CTRL.PROC2.VMCS_SHADOWING_BITMAPS", `VMREAD_BITMAP=${hex(r)}, VMWRITE_BITMAP=${hex(w)}: must be 4-KByte aligned and below 2^${ctx.maxPhys}`);
    }
  }
  if (proc2 & PROC2.EPT_VIOLATION_VE) page(ctx, "CTRL.PROC2.VE_INFO_ADDR", "VE_INFORMATION_ADDRESS", SLOT.VE_INFO);
  if (proc2 & PROC2.PT_USE_GPA && (!ept || !(entry & ENTRY.LOAD_IA32_RTIT_CTL) || !(exit & EXIT.CLEAR_IA32_RTIT_CTL))) {
    report(ctx, "CTRL.PROC2.PT_USES_GPA", `SECONDARY_VM_EXEC_CONTROL=${hex(proc2)}: PT uses GPA needs enable EPT, load IA32_RTIT_CTL (entry) and clear IA32_RTIT_CTL (exit)`);
  }
  if (proc2 & PROC2.USE_TSC_SCALING && lo(ctx, SLOT.TSC_MULT) === 0 && hi(ctx, SLOT.TSC_MULT) === 0) {
    report(ctx, "CTRL.PROC2.TSC_MULTIPLIER_NONZERO", "TSC_MULTIPLIER=0x0: must not be 0 with use TSC scaling");
  }

  // tertiary (newer SDMs)
  const { proc3Lo, proc3Hi } = ctx;
  if (proc & PROC.ACTIVATE_TERTIARY_CONTROLS && (proc3Lo & ~k.procCtls3.lo || proc3Hi & ~k.procCtls3.hi)) {
    const proc3 = st.getSlot(SLOT.PROC3);
    const bad = proc3 & ~caps.msrs.IA32_VMX_PROCBASED_CTLS3;
    report(ctx, "CTRL.PROC3.ALLOWED_BITS", `TERTIARY_VM_EXEC_CONTROL=${hex(proc3)}: bits ${hex(bad)} not allowed by IA32_VMX_PROCBASED_CTLS3`);
  }
  if (proc3Lo & PROC3_HLAT) {
    // HLATP: bits 2:0 and 11:5 reserved (bits 4:3 are PWT/PCD-style hints), no bits ≥ MAXPHYADDR.
    if (!ept || (lo(ctx, SLOT.HLATP) & 0xfe7) !== 0 || !inPhysHi(ctx, hi(ctx, SLOT.HLATP))) {
      const h = st.getSlot(SLOT.HLATP);
      report(ctx, "CTRL.PROC3.HLAT", `HLAT_POINTER=${hex(h)}: HLAT needs enable EPT and an HLATP with bits 2:0, 11:5 clear, below 2^${ctx.maxPhys}`);
    }
  }
  if (proc3Lo & PROC3_IPI_VIRT) {
    if (!(proc2 & PROC2.VIRTUAL_INTR_DELIVERY) || (lo(ctx, SLOT.PID_TABLE) & 7) !== 0 || !inPhysHi(ctx, hi(ctx, SLOT.PID_TABLE))) {
      const t = st.getSlot(SLOT.PID_TABLE);
      report(ctx, "CTRL.PROC3.IPI_VIRT", `PID_POINTER_TABLE=${hex(t)}: IPI virtualization needs virtual-interrupt delivery and an 8-byte aligned table below 2^${ctx.maxPhys}`);
    }
  }

  // §26.2.1.2 VM-exit controls
  allowed(ctx, "CTRL.EXIT.ALLOWED_BITS", "VM_EXIT_CONTROLS", exit, k.exitMust1, k.exitMay1);
  if (exit & EXIT.ACTIVATE_SECONDARY_CONTROLS && (ctx.exit2Lo & ~k.exitCtls2.lo || ctx.exit2Hi & ~k.exitCtls2.hi)) {
    const exit2 = st.getSlot(SLOT.EXIT2);
    const bad = exit2 & ~caps.msrs.IA32_VMX_EXIT_CTLS2;
    report(ctx, "CTRL.EXIT2.ALLOWED_BITS", `SECONDARY_VM_EXIT_CONTROLS=${hex(exit2)}: bits ${hex(bad)} not allowed by IA32_VMX_EXIT_CTLS2`);
  }
  if (exit & EXIT.SAVE_VMX_PREEMPTION_TIMER && !(pin & PIN.ACTIVATE_PREEMPTION_TIMER)) {
    report(ctx, "CTRL.EXIT.PREEMPT_SAVE_REQUIRES_TIMER", `VM_EXIT_CONTROLS=${hex(exit)}: save preemption timer without activate VMX-preemption timer`);
  }
  msrArea(ctx, "CTRL.EXIT.MSR_STORE_AREA", "VM_EXIT_MSR_STORE_COUNT", lo(ctx, SLOT.EXIT_STORE_COUNT), "VM_EXIT_MSR_STORE_ADDR", SLOT.EXIT_STORE_ADDR);
  msrArea(ctx, "CTRL.EXIT.MSR_LOAD_AREA", "VM_EXIT_MSR_LOAD_COUNT", lo(ctx, SLOT.EXIT_LOAD_COUNT), "VM_EXIT_MSR_LOAD_ADDR", SLOT.EXIT_LOAD_ADDR);

  // §26.2.1.3 VM-entry controls
  allowed(ctx, "CTRL.ENTRY.ALLOWED_BITS", "VM_ENTRY_CONTROLS", entry, k.entryMust1, k.entryMay1);
  const smmCtls = entry & (ENTRY.ENTRY_TO_SMM | ENTRY.DEACTIVATE_DUAL_MONITOR);
  if (smmCtls && !ctx.env.inSmm) {
    report(ctx, "CTRL.ENTRY.SMM_CTLS_OUTSIDE_SMM", `VM_ENTRY_CONTROLS=${hex(entry)}: entry to SMM / deactivate dual-monitor treatment outside SMM`);
  }
  if (smmCtls === (ENTRY.ENTRY_TO_SMM | ENTRY.DEACTIVATE_DUAL_MONITOR)) {
    report(ctx, "CTRL.ENTRY.SMM_CTLS_NOT_BOTH", `VM_ENTRY_CONTROLS=${hex(entry)}: entry to SMM and deactivate dual-monitor treatment both 1`);
  }
  checkInjection(ctx);
  msrArea(ctx, "CTRL.ENTRY.MSR_LOAD_AREA", "VM_ENTRY_MSR_LOAD_COUNT", lo(ctx, SLOT.ENTRY_LOAD_COUNT), "VM_ENTRY_MSR_LOAD_ADDR", SLOT.ENTRY_LOAD_ADDR);
}

/** Vectors of exceptions that push an error code (plus #CP on CET parts). */
function pushesErrorCode(vector: number, cet: boolean): boolean {
  return vector === 8 || (vector >= 10 && vector <= 14) || vector === 17 || (cet && vector === 21);
}

/**
 * §26.2.1.3 event-injection checks, with the FRED additions of the newest SDM (28.2.1.3): "other
 * event" (type 7) carries vector 0 (pending MTF VM exit, needs MTF) or, for a guest with FRED
 * transitions enabled (IA-32e mode guest and CR4.FRED), 1 (SYSCALL) or 2 (SYSENTER) with an
 * instruction length ≤ 15; bit 13 (nested exception) is allowed only for hardware exceptions on
 * CPUs reporting IA32_VMX_BASIC[58].
 */
function checkInjection(ctx: Ctx): void {
  const { caps, k } = ctx;
  const info = lo(ctx, SLOT.INTR_INFO);
  if (!(info & INTR_INFO.VALID)) return;
  const vector = info & 0xff;
  const type = (info >>> 8) & 7;
  const ec = (info & INTR_INFO.DELIVER_ERROR_CODE) !== 0;
  const f = `VM_ENTRY_INTR_INFO_FIELD=${hex(info >>> 0)}`;
  const mtf = k.mtf;
  const fredCpu = caps.cpu.fred === true;
  const fredGuest = (ctx.entry & ENTRY.IA32E_MODE_GUEST) !== 0 && (hi(ctx, SLOT.G_CR4) & CR4_FRED_HI) !== 0;
  if (type === 1 || (type === 7 && !mtf && !fredCpu)) {
    report(ctx, "CTRL.ENTRY.INJ.TYPE", `${f}: interruption type ${type} is ${type === 1 ? "reserved" : "not supported (no monitor trap flag, no FRED)"}`);
  } else {
    const badOther = type === 7 && (vector === 0 ? !mtf : vector === 1 || vector === 2 ? !fredGuest : true);
    if ((type === 2 && vector !== 2) || (type === 3 && vector > 31) || badOther) {
      const why =
        type === 7 && vector === 0
          ? "vector 0 (MTF) needs the monitor-trap-flag control"
          : type === 7 && (vector === 1 || vector === 2)
            ? `vector ${vector} (${vector === 1 ? "SYSCALL" : "SYSENTER"}) needs an IA-32e mode guest with CR4.FRED = 1`
            : `vector ${vector} is invalid for type ${type}`;
      report(ctx, "CTRL.ENTRY.INJ.VECTOR", `${f}: ${why}`);
    }
  }
  const ug = (ctx.proc2 & PROC2.UNRESTRICTED_GUEST) !== 0;
  const pe = (lo(ctx, SLOT.G_CR0) & 1) === 1;
  const mustBeZero = (ug && !pe) || type !== 3;
  const basic56 = k.basic56;
  if (basic56 ? ec && mustBeZero : ec !== (!mustBeZero && pushesErrorCode(vector, caps.cpu.cet))) {
    report(ctx, "CTRL.ENTRY.INJ.DELIVER_EC", `${f}: deliver-error-code (bit 11) must be ${ec ? 0 : 1} for type ${type} vector ${vector}${ug && !pe ? " in real mode" : ""}`);
  }
  const nestedOk = k.nestedException && type === 3 ? INTR_INFO.NESTED_EXCEPTION : 0;
  if (info & 0x7fff_f000 & ~nestedOk) {
    report(ctx, "CTRL.ENTRY.INJ.RESERVED", `${f}: bits 30:12 must be 0${info & INTR_INFO.NESTED_EXCEPTION ? " (bit 13, nested exception, needs IA32_VMX_BASIC[58] and type 3)" : ""}`);
  }
  if (ec) {
    const code = lo(ctx, SLOT.INTR_EC);
    if (code & 0xffff_0000) report(ctx, "CTRL.ENTRY.INJ.ERROR_CODE", `VM_ENTRY_EXCEPTION_ERROR_CODE=${hex(code)}: bits 31:16 must be 0`);
  }
  if (type === 4 || type === 5 || type === 6) {
    const len = lo(ctx, SLOT.INSTR_LEN);
    if (len > 15 || (len === 0 && !k.zeroLengthInjection)) {
      report(ctx, "CTRL.ENTRY.INJ.INSTR_LEN", `VM_ENTRY_INSTRUCTION_LEN=${len}: must be 1–15${k.zeroLengthInjection ? " or 0" : ""} for type ${type}`);
    }
  } else if (type === 7 && (vector === 1 || vector === 2)) {
    const len = lo(ctx, SLOT.INSTR_LEN);
    if (len > 15) report(ctx, "CTRL.ENTRY.INJ.INSTR_LEN", `VM_ENTRY_INSTRUCTION_LEN=${len}: must be at most 15 for a FRED ${vector === 1 ? "SYSCALL" : "SYSENTER"} event`);
  }
}
