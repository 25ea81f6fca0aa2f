import { readFileSync } from "node:fs";
import { expect, it } from "vitest";

const here = new URL(".", import.meta.url);

it("the README example is test/readme-example.ts, and it runs (its asserts pass)", async () => {
  const readme = readFileSync(new URL("../README.md", here), "utf8");
  const block = /```ts\n([\s\S]*?)```/.exec(readme)?.[1];
  expect(block).toBe(readFileSync(new URL("readme-example.ts", here), "utf8"));
  await import("./readme-example.js");
});
