import { GuestMemoryMap } from "@tsvmm/abi";
import { Emulator, type EmulatorOptions, SimpleCpu, type SimpleCpuInit } from "@tsvmm/x86";

export const CODE = 0x1000n;
export const DATA = 0x8000n;

/** A 64 KiB guest with code at 0x1000, identity-mapped, CPL0 long mode unless told otherwise. */
export function machine(code: string, init: Partial<SimpleCpuInit> = {}, options: EmulatorOptions = {}): { cpu: SimpleCpu; emu: Emulator } {
  const memory = GuestMemoryMap.allocate([{ base: 0, size: 0x10000 }]);
  memory.write(CODE, Buffer.from(code.replace(/ /g, ""), "hex"));
  const cpu = new SimpleCpu({ memory, ...init });
  cpu.rip = CODE;
  return { cpu, emu: new Emulator(cpu, options) };
}
