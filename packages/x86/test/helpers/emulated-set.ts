/** Mnemonics the emulator executes; their operands are compared with objdump's, not only lengths. */
export const EMULATED_MNEMONICS = new Set([
  "mov", "movabs", "movzx", "movsx", "movsxd", "add", "or", "adc", "sbb", "and", "sub", "xor", "cmp", "test", "not", "neg", "inc", "dec",
  "rol", "ror", "rcl", "rcr", "shl", "shr", "sal", "sar", "movsb", "movsw", "movsd", "movsq", "stosb", "stosw", "stosd", "stosq",
  "cmpxchg8b", "cmpxchg16b", "popcnt", "xsave", "xsave64", "xrstor", "xrstor64", "xsaveopt", "xsaveopt64", "xsavec", "xsavec64",
  "xsaves", "xsaves64", "xrstors", "xrstors64", "ldmxcsr", "stmxcsr", "rdrand", "rdseed", "rdpid", "movd", "movq", "movdqu", "movdqa",
  "vmovdqu", "vmovdqa", "pshufb", "paddd", "pxor", "por", "pshufd", "psrld", "pslld", "palignr",
]);

const PREFIX_TOKEN = /^(lock|rep|repz|repnz|repe|repne|data16|data32|addr16|addr32|rex(\.[WRXB]+)?|cs|ds|es|ss|fs|gs|bnd|notrack|xacquire|xrelease|\{[a-z0-9]+\})$/;

/** objdump's Intel text without prefixes and comments: [mnemonic, operands]. */
export function splitObjdumpText(text: string): [string, string] {
  const noComment = text.replace(/\s+#.*$/, "").replace(/\s+<[^>]*>$/, "");
  const tokens = noComment.trim().split(/\s+/);
  while (tokens.length > 1 && PREFIX_TOKEN.test(tokens[0]!)) tokens.shift();
  return [tokens[0] ?? "", tokens.slice(1).join(" ")];
}
