import { readFileSync } from "node:fs";
import * as svm from "@tsvmm/svm";
import { expect, it } from "vitest";

// Runs the README's ```ts example against the package source and compares what it logs with the
// `// ...` comment under each console.log.

const readme = readFileSync(new URL("../README.md", import.meta.url), "utf8");

it("the README example runs and logs what its comments say", () => {
  const block = /```ts\n([\s\S]*?)```/.exec(readme)?.[1];
  expect(block).toBeDefined();
  const code = block!.replace(/^import \{([^}]*)\} from "@tsvmm\/svm";$/m, "const {$1} = svm;").replaceAll("console.log(", "log(");
  expect(code).not.toMatch(/^import /m);
  const logged: unknown[] = [];
  new Function("svm", "log", code)(svm, (x: unknown) => logged.push(x));
  const comments = [...block!.matchAll(/console\.log\([^\n]*\n\/\/ ([^\n]*)/g)].map((m) => m[1]!);
  expect(logged.length).toBe(comments.length);
  expect(logged.length).toBe(2);
  // First: an array of violations written as a JS literal in the comment.
  const json = comments[0]!.replace(/([{,] )(\w+): /g, '$1"$2": ');
  expect(logged[0]).toEqual(JSON.parse(json));
  // Second: the outcome kind, then a note in parentheses.
  expect(logged[1]).toBe(comments[1]!.split(/\s+/)[0]);
});
