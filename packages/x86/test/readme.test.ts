// Runs the README's example (the ```ts block) and checks what it prints.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import * as abi from "@tsvmm/abi";
import * as x86 from "@tsvmm/x86";
import { expect, it } from "vitest";

it("README example runs and prints what its comments say", async () => {
  const md = readFileSync(join(import.meta.dirname, "../README.md"), "utf8");
  const blocks = [...md.matchAll(/```ts\n([\s\S]*?)```/g)].map((m) => m[1]!);
  const example = blocks.find((b) => b.includes("import {"))!;
  const body = example.replace(/^import .*$/gm, "");
  const logs: string[] = [];
  const log = (...a: unknown[]): void => {
    logs.push(a.map((x) => (typeof x === "bigint" ? `${x}n` : typeof x === "object" ? JSON.stringify(x) : String(x))).join(" "));
  };
  // The example's own imports are replaced by the same modules, passed in.
  const fn = new Function("GuestMemoryMap", "decode", "Emulator", "formatIntel", "SimpleCpu", "console", body);
  fn(abi.GuestMemoryMap, x86.decode, x86.Emulator, x86.formatIntel, x86.SimpleCpu, { log });
  const expected = [...body.matchAll(/console\.log\(.*\); \/\/ (.*)$/gm)].map((m) => m[1]!);
  expect(logs).toEqual(["6 cmpxchg16b OWORD PTR gs:[rdi]", "executed 170n 187n", '{"cmpxchg16b":1}']);
  expect(expected).toEqual(["6 cmpxchg16b OWORD PTR gs:[rdi]", "executed 170n 187n", "{ cmpxchg16b: 1 }"]);
});
