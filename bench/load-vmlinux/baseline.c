// C baseline for load-vmlinux: copy the same PT_LOAD bytes (and zero the same bss tails) of the
// vmlinux into a fresh anonymous mapping of the guest's size, as a VMM in C would.
// Usage: baseline <vmlinux> <guest-bytes> <iterations>; prints {"mbps": median, "bytes": n}.
#include <elf.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

static int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
  if (argc < 4) return 2;
  FILE *f = fopen(argv[1], "rb");
  if (!f) return 1;
  fseek(f, 0, SEEK_END);
  long len = ftell(f);
  fseek(f, 0, SEEK_SET);
  unsigned char *file = malloc(len);
  if (fread(file, 1, len, f) != (size_t)len) return 1;
  fclose(f);
  size_t guest = strtoull(argv[2], 0, 0);
  int iters = atoi(argv[3]);
  Elf64_Ehdr *eh = (Elf64_Ehdr *)file;
  double *mbps = calloc(iters, sizeof(double));
  size_t bytes = 0;
  for (int it = 0; it < iters; it++) {
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    unsigned char *mem = mmap(0, guest, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED) return 1;
    bytes = 0;
    for (int i = 0; i < eh->e_phnum; i++) {
      Elf64_Phdr *ph = (Elf64_Phdr *)(file + eh->e_phoff + (size_t)i * eh->e_phentsize);
      if (ph->p_type != PT_LOAD || ph->p_paddr + ph->p_memsz > guest) continue;
      memcpy(mem + ph->p_paddr, file + ph->p_offset, ph->p_filesz);
      memset(mem + ph->p_paddr + ph->p_filesz, 0, ph->p_memsz - ph->p_filesz);
      bytes += ph->p_memsz;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    // Keep the copy observable so it cannot be optimised away.
    volatile unsigned char sink = mem[0x1000000];
    (void)sink;
    munmap(mem, guest);
    double s = (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9;
    mbps[it] = bytes / 1e6 / s;
  }
  qsort(mbps, iters, sizeof(double), cmp);
  printf("{\"mbps\": %.3f, \"bytes\": %zu}\n", mbps[iters / 2], bytes);
  return 0;
}
