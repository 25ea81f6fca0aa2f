import { readFileSync } from "node:fs";
import { GuestMemoryError, GuestMemoryMap, HC_MAGIC, HcRequestLayout } from "@tsvmm/abi";
import { expect, it } from "vitest";

// The README's example is the code between the markers below, character for character (the
// first test checks that), and the second test runs it.
function example() {
  // README-EXAMPLE-START
  const mem = GuestMemoryMap.allocate([{ base: 0, size: 1 << 20 }]);
  mem.writeU32(0x1000, 0xdeadbeef);
  const word = mem.readU32(0x1000); // 0xdeadbeef

  // A declared C object, whole: here a hypercall request block (struct tsvmm_hc).
  mem.writeObj(HcRequestLayout, 0x2000, { magic: HC_MAGIC, version: 1, call: 0, arg: [1n, 0n, 0n, 0n], result: 0n });
  const block = mem.readObj(HcRequestLayout, 0x2000); // { magic: HC_MAGIC, version: 1, ... }

  let code = "";
  try {
    mem.readU32(0x100000); // one past the end
  } catch (e) {
    code = (e as GuestMemoryError).code; // "GUEST_MEMORY_OUT_OF_RANGE"
  }
  // README-EXAMPLE-END
  return { mem, word, block, code };
}

it("the README's example is the code this test runs", () => {
  const readme = readFileSync(new URL("../README.md", import.meta.url), "utf8");
  const block = /```ts\n([\s\S]*?)```/.exec(readme)?.[1];
  const src = readFileSync(new URL(import.meta.url), "utf8");
  const body = src.slice(src.indexOf("// README-EXAMPLE-START\n") + 24, src.indexOf("  // README-EXAMPLE-END"));
  const dedent = (s: string) => s.replace(/^ {2}/gm, "").trim();
  expect(block).toBeDefined();
  // The README block adds only its import lines.
  expect(block!.replace(/^import[^\n]*\n/gm, "").trim()).toBe(dedent(body));
});

it("the README's example gives what it says", () => {
  const { mem, word, block, code } = example();
  expect(word).toBe(0xdeadbeef);
  expect(block).toEqual({ magic: HC_MAGIC, version: 1, call: 0, arg: [1n, 0n, 0n, 0n], result: 0n });
  expect(mem.readU32(0x2000)).toBe(HC_MAGIC);
  expect(code).toBe("GUEST_MEMORY_OUT_OF_RANGE");
  expect(() => mem.readU32(0x100000)).toThrow(GuestMemoryError);
});
