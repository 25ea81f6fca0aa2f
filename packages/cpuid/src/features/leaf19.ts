import { type FeatureBit, registerBits } from "./define.js";

// CPUID.19H: Key Locker leaf, SDM Vol. 2A Table 3-8 and the Key Locker specification.
export const LEAF19_FEATURES: readonly FeatureBit[] = [
  ...registerBits(0x19, 0, "eax", {
    0: "kl_cpl0_only",
    1: "kl_no_encrypt",
    2: "kl_no_decrypt",
  }),
  ...registerBits(0x19, 0, "ebx", {
    0: "aeskle",
    2: "aes_wide_kl",
    4: "kl_iwkey_backup",
  }),
  ...registerBits(0x19, 0, "ecx", {
    0: "kl_nobackup",
    1: "kl_keysource_random",
  }),
];
