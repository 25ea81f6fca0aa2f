import { readdirSync, readFileSync } from "node:fs";
import { GuestMemoryMap } from "@tsvmm/abi";
import fc from "fast-check";
import { beforeAll, describe, expect, it } from "vitest";
import { BOOT_IMAGE_MIN } from "@tsvmm/elf-loader";
import { BootMode, loadGuestImage, parseGuestElf } from "../harness/elf.js";
import { HarnessError } from "../harness/errors.js";
import { buildGuests, guestPath, loadImage } from "../harness/guest.js";

// The guests' side of the boot contract, checked on the built files, and the harness's ELF
// reader against corrupt input.

const REAL16 = ["realmode-arith"];
const PROT32 = ["pmode-flat", "longmode-self-paged"];
const cases = readdirSync(new URL("../tests/", import.meta.url)).filter((f) => f.endsWith(".c")).map((f) => f.slice(0, -2));

beforeAll(() => buildGuests());

describe("guest images and the boot contract", () => {
  it("there is one guest per case, at least the 29 of the suite", () => {
    expect(cases.length).toBeGreaterThanOrEqual(29);
  });

  it("every guest carries the boot-mode note its Makefile group promises", () => {
    for (const name of cases) {
      const img = loadImage(name);
      const mode = REAL16.includes(name) ? BootMode.real16 : PROT32.includes(name) ? BootMode.prot32 : BootMode.long64;
      expect(img.mode, name).toBe(mode);
      // prot32 guests also boot under a standard PVH loader, at the same entry.
      expect(img.pvhEntry, name).toBe(mode === BootMode.prot32 ? img.entry : undefined);
      for (const s of img.segments) {
        if (mode === BootMode.real16) expect(s.paddr + s.memsz, name).toBeLessThanOrEqual(0x10000);
        // Never over the VMM's boot GDT and page tables.
        else expect(s.paddr, name).toBeGreaterThanOrEqual(BOOT_IMAGE_MIN);
      }
      expect(img.elfClass, name).toBe(mode === BootMode.long64 || name === "longmode-self-paged" ? 64 : 32);
    }
  });

  it("loading copies file bytes and zeroes the bss", () => {
    const img = loadImage("hello");
    const mem = GuestMemoryMap.allocate([{ base: 0, size: 4 << 20 }]);
    mem.fill(0, 4 << 20, 0xcc);
    loadGuestImage(img, mem);
    const seg = img.segments[0]!;
    expect(Buffer.from(mem.slice(seg.paddr, seg.data.length)).equals(seg.data)).toBe(true);
    const bss = Buffer.from(mem.slice(seg.paddr + seg.data.length, seg.memsz - seg.data.length));
    expect(bss.every((b) => b === 0)).toBe(true);
  });

  it("a segment outside guest RAM is a HARNESS_BAD_ELF error", () => {
    const img = loadImage("hello");
    const small = GuestMemoryMap.allocate([{ base: 0, size: 1 << 20 }]);
    expect(() => loadGuestImage(img, small)).toThrow(expect.objectContaining({ code: "HARNESS_BAD_ELF" }));
  });

  it("corrupt or truncated files give HarnessError, never another exception", () => {
    const file = readFileSync(guestPath("exceptions-ud"));
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.nat({ max: 127 }), fc.nat({ max: 255 })), { maxLength: 8 }),
        fc.nat({ max: file.length }),
        (edits, cut) => {
          const b = Buffer.from(file.subarray(0, Math.max(cut, 1)));
          for (const [at, v] of edits) if (at < b.length) b[at] = v;
          try {
            parseGuestElf(b);
          } catch (e) {
            expect(e).toBeInstanceOf(HarnessError);
          }
        },
      ),
      { numRuns: 300 },
    );
  });
});
