import { readFileSync } from "node:fs";
import { join } from "node:path";
import { packageRoot } from "../builder.js";

let cached: string | undefined;

/** This package's version, recorded in every snapshot header. */
export function tsvmmVersion(): string {
  if (cached !== undefined) return cached;
  try {
    cached = (JSON.parse(readFileSync(join(packageRoot(), "package.json"), "utf8")) as { version: string }).version;
  } catch {
    cached = "unknown";
  }
  return cached;
}
