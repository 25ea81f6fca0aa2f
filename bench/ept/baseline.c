// C baseline for ept-map-1gib-4k: the same work as the TypeScript bench — build 4-level EPT
// tables for 1 GiB of 4 KiB pages (WB, RWX) in a buffer standing for guest memory, from a bump
// allocator of zeroed pages, then walk 10^6 pseudo-random guest-physical addresses with the same
// present / reserved / permission checks. Prints {"map_ms", "translate_ms", "checksum"}.
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MEM_SIZE (4u << 20)
#define PAGE 4096u
static uint8_t *mem;
static uint64_t bump;

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static uint64_t *table(uint64_t pa) { return (uint64_t *)(mem + pa); }

static uint64_t alloc_page(void) {
  uint64_t p = bump;
  bump += PAGE;
  memset(mem + p, 0, PAGE);
  return p;
}

#define EPT_RWX 7ull
#define EPT_LEAF (EPT_RWX | (6ull << 3))
#define ADDR_MASK 0x000ffffffffff000ull
#define RES_HI_46 (((1ull << 52) - 1) & ~((1ull << 46) - 1))

static void map_4k(uint64_t root, uint64_t gpa, uint64_t hpa, uint64_t size) {
  for (uint64_t off = 0; off < size; off += PAGE) {
    uint64_t va = gpa + off, t = root;
    for (int level = 4; level > 1; level--) {
      uint64_t *e = &table(t)[(va >> (12 + 9 * (level - 1))) & 511];
      if (!(*e & 7)) *e = alloc_page() | EPT_RWX;
      t = *e & ADDR_MASK;
    }
    table(t)[(va >> 12) & 511] = ((hpa + off) & ADDR_MASK) | EPT_LEAF;
  }
}

// Returns the host-physical address, or a negative fault code.
static int64_t translate(uint64_t root, uint64_t gpa, uint64_t need) {
  if (gpa >> 48) return -4;
  uint64_t t = root, acc = ~0ull;
  for (int level = 4; level >= 1; level--) {
    uint64_t e = table(t)[(gpa >> (12 + 9 * (level - 1))) & 511];
    if (!(e & 7)) return -1;
    int leaf = level == 1 || (level <= 3 && (e & 0x80));
    if (e & RES_HI_46) return -2;
    if (!leaf && (e & (level >= 4 ? 0xf8 : 0x78))) return -2;
    if ((e & 3) == 2) return -2;
    acc &= e;
    if (leaf) {
      if (!(acc & need)) return -3;
      uint64_t off = (1ull << (12 + 9 * (level - 1))) - 1;
      return (int64_t)((e & ADDR_MASK & ~off) | (gpa & off));
    }
    t = e & ADDR_MASK;
  }
  return -1;
}

int main(int argc, char **argv) {
  int n = argc > 1 ? atoi(argv[1]) : 1000000;
  int reps = argc > 2 ? atoi(argv[2]) : 5;
  mem = aligned_alloc(PAGE, MEM_SIZE);
  double best_map = 1e30, best_tr = 1e30;
  int64_t checksum = 0;
  for (int r = 0; r < reps; r++) {
    bump = 0;
    double t0 = now_ms();
    uint64_t root = alloc_page();
    map_4k(root, 0, 0x100000000ull, 1ull << 30);
    double t1 = now_ms();
    uint32_t x = 0x12345678u;
    int64_t sum = 0;
    for (int i = 0; i < n; i++) {
      x ^= x << 13; x ^= x >> 17; x ^= x << 5;
      sum += translate(root, x >> 2, 1);
    }
    double t2 = now_ms();
    if (t1 - t0 < best_map) best_map = t1 - t0;
    if (t2 - t1 < best_tr) best_tr = t2 - t1;
    checksum = sum;
  }
  printf("{\"map_ms\": %.4f, \"translate_ms\": %.4f, \"checksum\": %lld}\n", best_map, best_tr, (long long)checksum);
  return 0;
}
