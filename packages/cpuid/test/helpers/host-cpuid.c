/* Prints this host's CPUID as "leaf subleaf eax ebx ecx edx" lines (hex), for the tests. */
#include <cpuid.h>
#include <stdio.h>

static void one(unsigned leaf, unsigned sub) {
  unsigned a, b, c, d;
  __cpuid_count(leaf, sub, a, b, c, d);
  printf("%x %x %x %x %x %x\n", leaf, sub, a, b, c, d);
}

static int indexed(unsigned leaf) {
  return leaf == 4 || leaf == 7 || leaf == 0xb || leaf == 0xd || leaf == 0xf || leaf == 0x10 || leaf == 0x12 ||
         leaf == 0x14 || leaf == 0x17 || leaf == 0x18 || leaf == 0x1f || leaf == 0x8000001d;
}

int main(void) {
  unsigned a, b, c, d;
  for (unsigned base = 0; base <= 0x80000000u; base += 0x80000000u) {
    __cpuid(base, a, b, c, d);
    unsigned max = a;
    if (max < base || max > base + 0x100) max = base;
    for (unsigned leaf = base; leaf <= max; leaf++) {
      if (!indexed(leaf)) { one(leaf, 0); continue; }
      for (unsigned sub = 0; sub < 64; sub++) one(leaf, sub);
    }
    if (base == 0x80000000u) break;
  }
  return 0;
}
