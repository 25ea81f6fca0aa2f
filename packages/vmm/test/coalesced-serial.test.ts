import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { requireKvm } from "@tsvmm/kvm-backend";
import { type Vmm, VmmBuilder, type VmmResult } from "@tsvmm/vmm";
import { afterAll, describe, expect, it } from "vitest";

const hasKvm = requireKvm();
const work = mkdtempSync(join(tmpdir(), "tsvmm-coalesced-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

/** A flat real-mode guest (loaded at 0x7c00) from GNU as source. */
function flat(name: string, source: string): Buffer {
  const dir = join(work, name);
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, "g.S"), `.code16\n.intel_syntax noprefix\n.globl _start\n_start:\n xor ax, ax\n mov ds, ax\n mov ss, ax\n mov sp, 0x7000\n${source}\n`);
  execFileSync("as", ["--64", "-o", join(dir, "g.o"), join(dir, "g.S")]);
  execFileSync("ld", ["-m", "elf_x86_64", "-Ttext", "0x7c00", "--oformat", "binary", "-e", "_start", "-o", join(dir, "g.bin"), join(dir, "g.o")]);
  return readFileSync(join(dir, "g.bin"));
}

/** `print`: OUT each byte of the NUL-terminated string at SI to THR, without polling LSR. */
const PRINT = `
print:
  push dx
  mov dx, 0x3f8
1: lodsb
  test al, al
  jz 2f
  out dx, al
  jmp 1b
2: pop dx
  ret`;
const EXIT = (reg: string) => `mov al, ${reg}\n out 0xf4, al\n3: hlt\n jmp 3b`;

interface Run {
  result: VmmResult;
  out: string;
  coalescedAtEnd: boolean;
}

async function run(kernel: Buffer, coalesce: boolean, configure: (b: VmmBuilder) => VmmBuilder = (b) => b): Promise<Run> {
  const chunks: Buffer[] = [];
  const vmm = configure(
    new VmmBuilder()
      .kernel(kernel, "flat")
      .memoryMiB(2)
      .coalesceSerial(coalesce)
      .console((b) => chunks.push(Buffer.from(b)))
      .watchdog({ timeoutMs: 30_000 }),
  ).build();
  const result = await vmm.run({ close: false });
  const coalescedAtEnd = vmm.serialCoalesced;
  await vmm.close();
  return { result, out: Buffer.concat(chunks).toString("latin1"), coalescedAtEnd };
}

describe.runIf(hasKvm)("the UART's THR writes through KVM's coalesced ring", () => {
  it("is on by default where KVM offers it, and off with coalesceSerial(false), a PIO observer or a trace", async () => {
    const g = flat("idle", EXIT("0"));
    const state = async (configure: (b: VmmBuilder) => VmmBuilder): Promise<boolean> => {
      const vmm = configure(new VmmBuilder().kernel(g, "flat").memoryMiB(2)).build();
      const on = vmm.serialCoalesced;
      await vmm.close();
      return on;
    };
    expect(await state((b) => b)).toBe(true);
    expect(await state((b) => b.coalesceSerial(false))).toBe(false);
    expect(await state((b) => b.observePio(() => {}))).toBe(false);
    expect(await state((b) => b.trace(join(work, "trace.jsonl")))).toBe(false);
  });

  it("a guest printing 4000 bytes (many full rings) gives the same output with coalescing on and off, with far fewer exits on", async () => {
    // 50 lines of 80 bytes: ' '..'o' then a newline; the ring holds 169 writes, so it fills ~23 times.
    const g = flat("lines", `
  mov cx, 50
L: mov si, offset line
  call print
  dec cx
  jnz L
  ${EXIT("0")}
${PRINT}
line: .ascii " !\\"#$%&'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\\\]^_\`abcdefghijklmn\\n\\0"`);
    const off = await run(g, false);
    const on = await run(g, true);
    expect(off.result.reason).toBe("guest-exit");
    expect(on.result.reason).toBe("guest-exit");
    expect(off.out.length).toBe(50 * 80);
    expect(on.out).toBe(off.out);
    console.log(`4000 bytes: ${off.result.exits} exits with coalescing off, ${on.result.exits} on`);
    expect(off.result.exits).toBeGreaterThanOrEqual(4000);
    expect(on.result.exits).toBeLessThan(100);
  });

  it("ordering: DLL written at DLAB=1 through the ring reads back; loopback sees its THR write in RBR and LSR.DR; SCR keeps order", async () => {
    // Each check that fails exits with its number; 0 when all pass. The first THR bytes go out
    // through the ring (nothing has exited yet) and must come out before the results line.
    const g = flat("order", `
  mov si, offset hello
  call print
  mov dx, 0x3fb
  mov al, 0x83
  out dx, al            # DLAB=1
  mov dx, 0x3f8
  mov al, 0x5a
  out dx, al            # DLL (queued)
  mov al, 0xa5
  out dx, al            # DLL again (queued)
  mov dx, 0x3fb
  mov al, 0x03
  out dx, al            # DLAB=0
  mov al, 0x83
  out dx, al
  mov dx, 0x3f8
  in al, dx             # DLL
  mov bl, 1
  cmp al, 0xa5
  jne fail
  mov dx, 0x3fb
  mov al, 0x03
  out dx, al
  mov si, offset mid
  call print            # queued again
  mov dx, 0x3ff
  mov al, 0x77
  out dx, al            # SCR
  in al, dx
  mov bl, 2
  cmp al, 0x77
  jne fail
  mov dx, 0x3fc
  mov al, 0x10
  out dx, al            # MCR: loopback
  mov dx, 0x3f8
  mov al, 0x42
  out dx, al            # THR -> RBR
  mov dx, 0x3fd
  in al, dx             # LSR
  mov bl, 3
  test al, 1
  jz fail
  mov dx, 0x3f8
  in al, dx
  mov bl, 4
  cmp al, 0x42
  jne fail
  mov dx, 0x3fc
  mov al, 0x03
  out dx, al            # loopback off
  mov si, offset done
  call print
  xor bl, bl
fail:
  ${EXIT("bl")}
${PRINT}
hello: .asciz "hello "
mid: .asciz "middle "
done: .asciz "done\\n"`);
    for (const coalesce of [false, true]) {
      const r = await run(g, coalesce);
      expect(r.result.reason).toBe("guest-exit");
      expect(r.result.exitCode >> 1).toBe(0);
      expect(r.out).toBe("hello middle done\n");
      expect(r.coalescedAtEnd).toBe(coalesce);
    }
  });

  it("a guest that turns on the THR-empty interrupt gets one per byte (each write exits), and coalescing comes back when it is off", async () => {
    // Real mode, in-kernel PIC at the BIOS bases: IRQ4 is vector 0x0c. The handler acknowledges
    // through IIR, sends the next byte of `irqmsg` and counts; after the last one it clears IER and
    // the main code prints the rest polled (through the ring again).
    const g = flat("thri", `
  cli
  mov word ptr [0x0c*4], offset handler
  mov word ptr [0x0c*4+2], 0
  mov byte ptr [count], 0
  mov word ptr [next], offset irqmsg
  mov dx, 0x3fc
  mov al, 0x08
  out dx, al            # MCR.OUT2: the PC's IRQ gate
  mov dx, 0x3f9
  mov al, 0x02
  out dx, al            # IER.THRI: raised at once (THR is empty)
  sti
W: hlt
  cmp byte ptr [count], 0xff
  jne W
  cli
  mov si, offset polled
  call print
  mov bl, 0
  ${EXIT("bl")}
handler:
  push ax
  push dx
  push si
  mov dx, 0x3fa
  in al, dx             # IIR
  and al, 0x0f
  cmp al, 0x02
  jne H9
  mov si, [next]
  lodsb
  test al, al
  jz H8
  mov [next], si
  mov dx, 0x3f8
  out dx, al
  inc byte ptr [count]
  jmp H9
H8:
  mov dx, 0x3f9
  xor al, al
  out dx, al            # IER=0: no more THR-empty interrupts
  mov byte ptr [count], 0xff
H9:
  mov al, 0x20
  out 0x20, al          # EOI
  pop si
  pop dx
  pop ax
  iret
${PRINT}
count: .byte 0
next: .word 0
irqmsg: .asciz "sent by interrupts; "
polled: .asciz "then polled\\n"`);
    const off = await run(g, false);
    const on = await run(g, true);
    for (const r of [off, on]) {
      expect(r.result.reason).toBe("guest-exit");
      expect(r.out).toBe("sent by interrupts; then polled\n");
    }
    expect(on.coalescedAtEnd).toBe(true);
    // Interrupt-driven bytes exit one by one either way; the polled ones only with coalescing off.
    console.log(`THRE-interrupt guest: ${off.result.exits} exits off, ${on.result.exits} on`);
    // The difference is the polled bytes (one of which may still exit as the ring's only entry
    // drained by an exit): had interrupt-driven writes been queued, it would be 20 more.
    expect(off.result.exits - on.result.exits).toBeGreaterThanOrEqual("then polled\n".length - 1);
    expect(off.result.exits - on.result.exits).toBeLessThanOrEqual("then polled\n".length);
  });

  it("a guest that prints a partial line and then computes without exits has it out within a bounded time", async () => {
    const g = flat("spin", `
  mov si, offset msg
  call print
S: jmp S
${PRINT}
msg: .asciz "prompt> "`);
    let vmm: Vmm | undefined;
    let seen = "";
    let arrivedMs = -1;
    const t0 = performance.now();
    vmm = new VmmBuilder()
      .kernel(g, "flat")
      .memoryMiB(2)
      .console((b) => {
        seen += b.toString("latin1");
        if (seen === "prompt> " && arrivedMs < 0) {
          arrivedMs = performance.now() - t0;
          vmm?.kill("seen", "stopped");
        }
      })
      .watchdog({ timeoutMs: 5_000 })
      .build();
    const r = await vmm.run();
    console.log(`partial line from a spinning guest arrived after ${arrivedMs.toFixed(1)} ms (build + boot included); ${r.exits} exits`);
    expect(r.reason).toBe("stopped");
    expect(seen).toBe("prompt> ");
    // The periodic drain (every UART_PARTIAL_LINE_MS) brought it, not the end of the run.
    expect(arrivedMs).toBeGreaterThan(0);
    expect(arrivedMs).toBeLessThan(2_000);
  });

  it("pause and snapshot leave the ring empty with every byte written so far out; a restored VM does not write them again", async () => {
    // Writes 'a'..'z' over and over, a short busy wait between bytes, counting them at 0x6000 after
    // each OUT: at a pause the output holds exactly `count` bytes, or one more (paused between the
    // OUT and the count).
    const g = flat("pause", `
  mov word ptr [0x6000], 0
  mov dx, 0x3f8
  mov al, 'a'
P: out dx, al
  inc word ptr [0x6000]
  inc al
  cmp al, 'z' + 1
  jne 1f
  mov al, 'a'
1: mov cx, 300
2: dec cx
  jnz 2b
  jmp P`);
    let out = "";
    const vmm = new VmmBuilder()
      .kernel(g, "flat")
      .memoryMiB(2)
      .console((b) => {
        out += b.toString("latin1");
      })
      .watchdog({ timeoutMs: 60_000 })
      .build();
    expect(vmm.serialCoalesced).toBe(true);
    const running = vmm.run();
    const pattern = (n: number) => Array.from({ length: n }, (_, i) => String.fromCharCode(97 + (i % 26))).join("");
    const check = () => {
      expect(vmm.vm.coalescedRing().pending).toBe(0);
      const count = vmm.vm.memory.readU16(0x6000);
      expect([count, count + 1]).toContain(out.length);
      expect(out).toBe(pattern(out.length));
      return count;
    };
    let last = 0;
    for (let i = 0; i < 20; i++) {
      await new Promise((r) => setTimeout(r, 1 + (i % 7)));
      await vmm.pause();
      last = check();
      vmm.resume();
    }
    expect(last).toBeGreaterThan(0);
    const dir = join(work, "snap");
    await vmm.snapshot(dir, { resume: false });
    check();
    const saved = out;
    vmm.kill("done", "stopped");
    await running;
    let again = "";
    const restored = await (await import("@tsvmm/vmm")).Vmm.restore(dir, { console: (b: Buffer) => (again += b.toString("latin1")), watchdog: { timeoutMs: 20_000 } });
    const done = restored.run();
    await new Promise((r) => setTimeout(r, 100));
    await restored.pause();
    // The restored guest goes on where it was: its bytes continue the pattern, none written twice.
    const count = restored.vm.memory.readU16(0x6000);
    expect(count).toBeGreaterThanOrEqual(last);
    expect(saved + again).toBe(pattern((saved + again).length));
    expect([count, count + 1]).toContain((saved + again).length);
    restored.kill("done", "stopped");
    await done;
  });
});
