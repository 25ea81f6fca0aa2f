import { accessSync, constants } from "node:fs";

/** True when /dev/kvm can be opened for reading and writing by this process. */
export function kvmAvailable(path = "/dev/kvm"): boolean {
  try {
    accessSync(path, constants.R_OK | constants.W_OK);
    return true;
  } catch {
    return false;
  }
}

/**
 * For test suites: whether KVM tests should run. With TSVMM_REQUIRE_KVM=1 (as in CI) a missing
 * /dev/kvm is an error, never a silent skip.
 */
export function requireKvm(path = "/dev/kvm"): boolean {
  const ok = kvmAvailable(path);
  if (!ok && process.env.TSVMM_REQUIRE_KVM === "1") {
    throw new Error(`TSVMM_REQUIRE_KVM=1 but ${path} cannot be opened`);
  }
  return ok;
}
