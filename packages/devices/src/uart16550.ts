import type { Device } from "./bus.js";
import { DeviceError } from "./errors.js";
import { type Stateful, stateCheck } from "./stateful.js";

// Register offsets (DLAB = LCR bit 7 swaps offsets 0/1 for the divisor latch).
const RBR_THR_DLL = 0;
const IER_DLM = 1;
const IIR_FCR = 2;
const LCR = 3;
const MCR = 4;
const LSR = 5;
const MSR = 6;
const SCR = 7;

export const IER_RDI = 0x01;
export const IER_THRI = 0x02;
export const IER_RLSI = 0x04;
export const IER_MSI = 0x08;

export const IIR_NO_INT = 0x01;
export const IIR_MSI = 0x00;
export const IIR_THRI = 0x02;
export const IIR_RDI = 0x04;
export const IIR_RLSI = 0x06;
export const IIR_RX_TIMEOUT = 0x0c;
export const IIR_FIFO_ENABLED = 0xc0;

export const FCR_ENABLE_FIFO = 0x01;
export const FCR_CLEAR_RCVR = 0x02;
export const FCR_CLEAR_XMIT = 0x04;

export const LCR_DLAB = 0x80;

export const MCR_DTR = 0x01;
export const MCR_RTS = 0x02;
export const MCR_OUT1 = 0x04;
export const MCR_OUT2 = 0x08;
export const MCR_LOOP = 0x10;

export const LSR_DR = 0x01;
export const LSR_OE = 0x02;
export const LSR_PE = 0x04;
export const LSR_FE = 0x08;
export const LSR_BI = 0x10;
export const LSR_THRE = 0x20;
export const LSR_TEMT = 0x40;
export const LSR_FIFOE = 0x80;

export const MSR_DCTS = 0x01;
export const MSR_DDSR = 0x02;
export const MSR_TERI = 0x04;
export const MSR_DDCD = 0x08;
export const MSR_CTS = 0x10;
export const MSR_DSR = 0x20;
export const MSR_RI = 0x40;
export const MSR_DCD = 0x80;

const FIFO_SIZE = 16;
const TRIGGER_LEVELS = [1, 4, 8, 14] as const;
const LSR_ERRORS = LSR_OE | LSR_PE | LSR_FE | LSR_BI;
const OUT_CHUNK = 4096;
/**
 * How long a partial line (a prompt) may wait in a stream output's buffer before it is written
 * anyway. Not "when the event loop turns": the exit path turns it between most OUTs, which wrote
 * each line in 2-4 pieces, one write(2) each (bench uart-output).
 */
export const UART_PARTIAL_LINE_MS = 10;

/** Where transmitted bytes go: a per-byte callback, or a stream (written in chunks). */
export type UartOutput = ((byte: number) => void) | { write(chunk: Uint8Array): unknown };

/** Everything of a Uart16550 a guest can observe, plus host input not yet in the FIFO (JSON). */
export interface Uart16550State {
  [key: string]: number | boolean | number[] | string;
  ier: number;
  lcr: number;
  mcr: number;
  lsr: number;
  msrDeltas: number;
  modemLines: number;
  external: number;
  scr: number;
  dll: number;
  dlm: number;
  fcr: number;
  thrPending: boolean;
  line: boolean;
  /** The receive FIFO's bytes in order (oldest first), at most 16. */
  rx: number[];
  lastRx: number;
  /** Host input queued behind the FIFO, hex. */
  pendingInput: string;
}

/** The modem-status inputs seen when not in loopback. */
export interface ModemInputs {
  cts: boolean;
  dsr: boolean;
  ri: boolean;
  dcd: boolean;
}

export interface Uart16550Options {
  /** Device name on the bus; default "uart16550". */
  name?: string;
  /** Called with the interrupt output's new level whenever it changes. */
  irq?: (level: boolean) => void;
  output?: UartOutput;
  /** Modem inputs (not loopback); default CTS, DSR and DCD asserted, RI not: a connected terminal. */
  modem?: Partial<ModemInputs>;
}

/**
 * A 16550A UART with 16-byte FIFOs. Transmission is instantaneous (THR is empty again as soon as it
 * is written), so LSR always shows THRE|TEMT. The receive FIFO is fed by `receive` (a wire: bytes
 * that find the FIFO full are lost and set OE) or `queueInput`/`connectInput` (flow-controlled:
 * bytes wait on the host side until the FIFO has room). Register it on 8 consecutive ports.
 */
export class Uart16550 implements Device, Stateful<Uart16550State> {
  readonly name: string;
  private readonly irq: ((level: boolean) => void) | undefined;
  private readonly sinks: ((byte: number) => void)[] = [];
  private readonly stream: { write(chunk: Uint8Array): unknown } | undefined;
  private outBuf = Buffer.alloc(OUT_CHUNK);
  private outLen = 0;
  private partialTimer: ReturnType<typeof setTimeout> | undefined;
  private deferredSource: (() => void) | undefined;
  private readonly deferrableListeners: ((deferrable: boolean) => void)[] = [];
  private deferrable = true;

  private ier = 0;
  private lcr = 0;
  private mcr = 0;
  private lsr = LSR_THRE | LSR_TEMT;
  private msrDeltas = 0;
  private modemLines = 0;
  private external = 0;
  private scr = 0;
  private dll = 0;
  private dlm = 0;
  private fcr = 0;
  private thrPending = false;
  private line = false;

  private readonly rx = new Uint8Array(FIFO_SIZE);
  private rxHead = 0;
  private rxCount = 0;
  private lastRx = 0;
  private readonly hostQueue: Uint8Array[] = [];
  private hostOffset = 0;

  constructor(options: Uart16550Options = {}) {
    this.name = options.name ?? "uart16550";
    this.irq = options.irq;
    const out = options.output;
    if (typeof out === "function") this.sinks.push(out);
    else if (out !== undefined) {
      if (typeof out !== "object" || out === null || typeof out.write !== "function") {
        throw new DeviceError("DEVICE_INVALID_OPTION", "uart output must be a function or an object with write()");
      }
      this.stream = out;
    }
    const m = { cts: true, dsr: true, ri: false, dcd: true, ...options.modem };
    this.external = (m.cts ? MSR_CTS : 0) | (m.dsr ? MSR_DSR : 0) | (m.ri ? MSR_RI : 0) | (m.dcd ? MSR_DCD : 0);
    this.modemLines = this.external;
  }

  /** Adds a listener for transmitted bytes (loopback bytes are not transmitted); returns a remover. */
  onOutput(listener: (byte: number) => void): () => void {
    this.sinks.push(listener);
    return () => {
      const i = this.sinks.indexOf(listener);
      if (i >= 0) this.sinks.splice(i, 1);
    };
  }

  /**
   * True when a write to THR has no effect the guest could see before its next access to this
   * UART: the THR-empty interrupt is off (IER bit 1 clear) and the UART is not in loopback. A VMM
   * may then let such writes wait (KVM's coalesced ring) as long as it hands them over, in order,
   * before the guest's next access to the UART and before anything else uses the device.
   */
  get thrWritesDeferrable(): boolean {
    return (this.ier & IER_THRI) === 0 && (this.mcr & MCR_LOOP) === 0;
  }

  /**
   * Calls `listener` each time `thrWritesDeferrable` changes (an IER or MCR write, reset,
   * restoreState), right after the change and before the write that made it returns: a VMM
   * deferring THR writes stops (or starts) doing so before the guest goes on. Returns a remover.
   */
  onThrWritesDeferrableChange(listener: (deferrable: boolean) => void): () => void {
    this.deferrableListeners.push(listener);
    return () => {
      const i = this.deferrableListeners.indexOf(listener);
      if (i >= 0) this.deferrableListeners.splice(i, 1);
    };
  }

  /**
   * Where THR writes the VMM let wait are held (a drain of KVM's coalesced ring): `drain` hands
   * them to `write` in order. It is called before the device does anything on the host's behalf
   * (flush, saveState, reset), so those see every byte the guest wrote before. Undefined removes it.
   */
  setDeferredWrites(drain: (() => void) | undefined): void {
    this.deferredSource = drain;
  }

  /** The interrupt output's current level. */
  get irqLevel(): boolean {
    return this.line;
  }

  /** Divisor latch (DLM:DLL); the baud rate is 115200 / divisor with the PC's 1.8432 MHz clock. */
  get divisor(): number {
    return (this.dlm << 8) | this.dll;
  }

  /** Bytes waiting in the receive FIFO (or holding register). */
  get rxLevel(): number {
    return this.rxCount;
  }

  /** Bytes waiting on the host side of `queueInput`/`connectInput`. */
  get pendingInput(): number {
    let n = 0;
    for (const c of this.hostQueue) n += c.length;
    return n - this.hostOffset;
  }

  read(offset: number, data: Buffer): void {
    for (let i = 0; i < data.length; i++) data[i] = this.readReg(offset + i);
  }

  write(offset: number, data: Buffer): void {
    for (let i = 0; i < data.length; i++) this.writeReg(offset + i, data[i]!);
  }

  /** Bytes arriving on the serial line: a full FIFO loses the byte and sets OE. Ignored in loopback. */
  receive(bytes: Uint8Array | readonly number[]): void {
    if (this.mcr & MCR_LOOP) return;
    for (let i = 0; i < bytes.length; i++) this.rxPush(bytes[i]! & 0xff);
    this.updateIrq();
  }

  /** A break condition on the line: a 0 byte with BI set. */
  receiveBreak(): void {
    if (this.mcr & MCR_LOOP) return;
    this.rxPush(0);
    this.lsr |= LSR_BI;
    this.updateIrq();
  }

  /** Host input with flow control: nothing is lost, bytes enter the FIFO as the guest reads. */
  queueInput(bytes: Uint8Array | string): void {
    const chunk = typeof bytes === "string" ? Buffer.from(bytes, "utf8") : Uint8Array.from(bytes);
    if (chunk.length === 0) return;
    this.hostQueue.push(chunk);
    this.pump();
    this.updateIrq();
  }

  /** Feeds a readable stream (e.g. process.stdin) through `queueInput`; returns a disconnector. */
  connectInput(stream: NodeJS.ReadableStream): () => void {
    const onData = (chunk: Buffer | string): void => this.queueInput(chunk);
    stream.on("data", onData);
    return () => {
      stream.off("data", onData);
    };
  }

  /** Sets the modem-status inputs (seen when not in loopback); changes set MSR delta bits. */
  setModemInputs(inputs: Partial<ModemInputs>): void {
    const flag = (v: boolean | undefined, bit: number): number =>
      v === undefined ? this.external & bit : v ? bit : 0;
    this.external =
      flag(inputs.cts, MSR_CTS) | flag(inputs.dsr, MSR_DSR) | flag(inputs.ri, MSR_RI) | flag(inputs.dcd, MSR_DCD);
    if (!(this.mcr & MCR_LOOP)) this.setModemLines(this.external);
    this.updateIrq();
  }

  /** Writes buffered stream output now, after any deferred THR writes (a no-op for callback output). */
  flush(): void {
    this.deferredSource?.();
    this.writeOut();
  }

  private writeOut(): void {
    if (this.partialTimer !== undefined) {
      clearTimeout(this.partialTimer);
      this.partialTimer = undefined;
    }
    if (this.outLen === 0 || this.stream === undefined) return;
    const chunk = Buffer.from(this.outBuf.subarray(0, this.outLen));
    this.outLen = 0;
    this.stream.write(chunk);
  }

  /** Back to the power-on state (host-side queued input and output listeners are kept). */
  reset(): void {
    this.flush();
    this.ier = 0;
    this.lcr = 0;
    this.mcr = 0;
    this.lsr = LSR_THRE | LSR_TEMT;
    this.msrDeltas = 0;
    this.modemLines = this.external;
    this.scr = 0;
    this.dll = 0;
    this.dlm = 0;
    this.fcr = 0;
    this.thrPending = false;
    this.rxHead = 0;
    this.rxCount = 0;
    this.updateIrq();
    this.checkDeferrable();
  }

  /**
   * The device's state. Buffered stream output is flushed first, so a byte written before the
   * save is neither lost nor written again after a restore.
   */
  saveState(): Uart16550State {
    this.flush();
    const rx: number[] = [];
    for (let i = 0; i < this.rxCount; i++) rx.push(this.rx[(this.rxHead + i) % FIFO_SIZE]!);
    const pending = Buffer.concat(this.hostQueue.map((c, i) => (i === 0 ? c.subarray(this.hostOffset) : c)));
    return {
      ier: this.ier, lcr: this.lcr, mcr: this.mcr, lsr: this.lsr, msrDeltas: this.msrDeltas, modemLines: this.modemLines,
      external: this.external, scr: this.scr, dll: this.dll, dlm: this.dlm, fcr: this.fcr, thrPending: this.thrPending,
      line: this.line, rx, lastRx: this.lastRx, pendingInput: pending.toString("hex"),
    };
  }

  /**
   * Take a saved state. The IRQ callback is not called: the interrupt controller's state (which
   * already saw this line's level) is restored on its own.
   */
  restoreState(state: Uart16550State): void {
    const d = this.name;
    const o = stateCheck.object(d, state);
    const byte = (k: string) => stateCheck.int(d, o, k, 0, 0xff);
    const ier = byte("ier"), lcr = byte("lcr"), mcr = byte("mcr"), lsr = byte("lsr"), msrDeltas = byte("msrDeltas");
    const modemLines = byte("modemLines"), external = byte("external"), scr = byte("scr"), dll = byte("dll"), dlm = byte("dlm");
    const fcr = byte("fcr"), lastRx = byte("lastRx");
    const thrPending = stateCheck.bool(d, o, "thrPending");
    const line = stateCheck.bool(d, o, "line");
    const rx = stateCheck.bytes(d, o, "rx", FIFO_SIZE);
    const pending = stateCheck.hex(d, o, "pendingInput", 2 ** 24);
    Object.assign(this, { ier, lcr, mcr, lsr, msrDeltas, modemLines, external, scr, dll, dlm, fcr, thrPending, line, lastRx });
    this.rx.fill(0);
    this.rx.set(rx);
    this.rxHead = 0;
    this.rxCount = rx.length;
    this.hostQueue.length = 0;
    this.hostOffset = 0;
    if (pending.length > 0) this.hostQueue.push(pending);
    this.checkDeferrable();
  }

  private checkDeferrable(): void {
    const now = this.thrWritesDeferrable;
    if (now === this.deferrable) return;
    this.deferrable = now;
    for (const l of [...this.deferrableListeners]) l(now);
  }

  private get fifoEnabled(): boolean {
    return (this.fcr & FCR_ENABLE_FIFO) !== 0;
  }

  private readReg(reg: number): number {
    switch (reg) {
      case RBR_THR_DLL:
        return this.lcr & LCR_DLAB ? this.dll : this.readRbr();
      case IER_DLM:
        return this.lcr & LCR_DLAB ? this.dlm : this.ier;
      case IIR_FCR: {
        const iir = this.iir();
        // Reading IIR acknowledges a THR-empty interrupt when that is what it reports.
        if ((iir & 0x0f) === IIR_THRI) {
          this.thrPending = false;
          this.updateIrq();
        }
        return iir;
      }
      case LCR:
        return this.lcr;
      case MCR:
        return this.mcr;
      case LSR: {
        let v = this.lsr | (this.rxCount > 0 ? LSR_DR : 0);
        if (this.fifoEnabled && v & (LSR_PE | LSR_FE | LSR_BI)) v |= LSR_FIFOE;
        this.lsr &= ~LSR_ERRORS;
        this.updateIrq();
        return v;
      }
      case MSR: {
        const v = this.modemLines | this.msrDeltas;
        this.msrDeltas = 0;
        this.updateIrq();
        return v;
      }
      case SCR:
        return this.scr;
      default:
        return 0xff;
    }
  }

  private writeReg(reg: number, v: number): void {
    switch (reg) {
      case RBR_THR_DLL:
        if (this.lcr & LCR_DLAB) this.dll = v;
        else this.transmit(v);
        return;
      case IER_DLM:
        if (this.lcr & LCR_DLAB) this.dlm = v;
        else {
          this.writeIer(v & 0x0f);
          this.checkDeferrable();
        }
        return;
      case IIR_FCR:
        this.writeFcr(v);
        return;
      case LCR:
        this.lcr = v;
        return;
      case MCR:
        this.writeMcr(v & 0x1f);
        this.checkDeferrable();
        return;
      case SCR:
        this.scr = v;
        return;
      default:
        // LSR and MSR writes are factory-test hooks on real parts; ignored.
        return;
    }
  }

  private readRbr(): number {
    if (this.rxCount > 0) {
      this.lastRx = this.rx[this.rxHead]!;
      this.rxHead = (this.rxHead + 1) % FIFO_SIZE;
      this.rxCount--;
      if (this.hostQueue.length > 0) this.pump();
      this.updateIrq();
    }
    // An empty receiver returns the last byte again, as the hardware's holding register does.
    return this.lastRx;
  }

  private transmit(v: number): void {
    // Writing THR clears the THR-empty interrupt; the instant "transmission" then re-raises it, so
    // an edge-triggered interrupt controller sees a fresh edge per byte.
    this.thrPending = false;
    this.updateIrq();
    if (this.mcr & MCR_LOOP) {
      this.rxPush(v);
    } else {
      for (let i = 0; i < this.sinks.length; i++) this.sinks[i]!(v);
      if (this.stream !== undefined) this.bufferOut(v);
    }
    this.thrPending = true;
    this.updateIrq();
  }

  private writeIer(v: number): void {
    const old = this.ier;
    this.ier = v;
    // Enabling the THR-empty interrupt while THR is empty (always, here) raises it at once; Linux's
    // startup THRE test depends on that.
    if (v & IER_THRI) {
      if (!(old & IER_THRI)) this.thrPending = true;
    } else {
      this.thrPending = false;
    }
    this.updateIrq();
  }

  private writeFcr(v: number): void {
    const enable = v & FCR_ENABLE_FIFO;
    if (enable !== (this.fcr & FCR_ENABLE_FIFO)) {
      // Switching FIFO mode on or off empties both FIFOs.
      this.rxHead = 0;
      this.rxCount = 0;
    }
    if (!enable) {
      // With FCR0 clear the other FCR bits are not programmed.
      this.fcr = 0;
    } else {
      if (v & FCR_CLEAR_RCVR) {
        this.rxHead = 0;
        this.rxCount = 0;
      }
      this.fcr = v & 0xc9;
    }
    if (this.hostQueue.length > 0) this.pump();
    this.updateIrq();
  }

  private writeMcr(v: number): void {
    this.mcr = v;
    this.setModemLines(v & MCR_LOOP ? loopbackLines(v) : this.external);
    this.updateIrq();
  }

  private setModemLines(lines: number): void {
    const changed = lines ^ this.modemLines;
    if (changed & MSR_CTS) this.msrDeltas |= MSR_DCTS;
    if (changed & MSR_DSR) this.msrDeltas |= MSR_DDSR;
    if (changed & MSR_DCD) this.msrDeltas |= MSR_DDCD;
    // TERI flags the trailing edge of RI only.
    if (changed & MSR_RI && !(lines & MSR_RI)) this.msrDeltas |= MSR_TERI;
    this.modemLines = lines;
  }

  private capacity(): number {
    return this.fifoEnabled ? FIFO_SIZE : 1;
  }

  private rxPush(byte: number): void {
    if (this.rxCount < this.capacity()) {
      this.rx[(this.rxHead + this.rxCount) % FIFO_SIZE] = byte;
      this.rxCount++;
    } else {
      this.lsr |= LSR_OE;
      // Without FIFOs the new byte overwrites the holding register; with them it is lost.
      if (!this.fifoEnabled) this.rx[this.rxHead] = byte;
    }
  }

  private pump(): void {
    const cap = this.capacity();
    while (this.rxCount < cap && this.hostQueue.length > 0 && !(this.mcr & MCR_LOOP)) {
      const chunk = this.hostQueue[0]!;
      this.rxPush(chunk[this.hostOffset++]!);
      if (this.hostOffset >= chunk.length) {
        this.hostQueue.shift();
        this.hostOffset = 0;
      }
    }
  }

  private iir(): number {
    const fifo = this.fifoEnabled ? IIR_FIFO_ENABLED : 0;
    const ier = this.ier;
    if (ier & IER_RLSI && this.lsr & LSR_ERRORS) return fifo | IIR_RLSI;
    if (ier & IER_RDI && this.rxCount > 0) {
      // No clock here: data below the trigger level reports the character timeout at once.
      if (this.fifoEnabled && this.rxCount < TRIGGER_LEVELS[this.fcr >> 6]!) return fifo | IIR_RX_TIMEOUT;
      return fifo | IIR_RDI;
    }
    if (ier & IER_THRI && this.thrPending) return fifo | IIR_THRI;
    if (ier & IER_MSI && this.msrDeltas) return fifo | IIR_MSI;
    return fifo | IIR_NO_INT;
  }

  private updateIrq(): void {
    const level = (this.iir() & IIR_NO_INT) === 0;
    if (level !== this.line) {
      this.line = level;
      if (this.irq !== undefined) this.irq(level);
    }
  }

  private bufferOut(v: number): void {
    this.outBuf[this.outLen++] = v;
    if (v === 0x0a || this.outLen === OUT_CHUNK) {
      this.writeOut();
    } else if (this.partialTimer === undefined) {
      // A line written out whole cancels this (writeOut), so a busy console makes one write a line.
      this.partialTimer = setTimeout(() => {
        this.partialTimer = undefined;
        this.flush();
      }, UART_PARTIAL_LINE_MS);
    }
  }
}

function loopbackLines(mcr: number): number {
  return (
    (mcr & MCR_RTS ? MSR_CTS : 0) |
    (mcr & MCR_DTR ? MSR_DSR : 0) |
    (mcr & MCR_OUT1 ? MSR_RI : 0) |
    (mcr & MCR_OUT2 ? MSR_DCD : 0)
  );
}
