// C baseline for bench/kvm-backend: the same guest and the same work as the TypeScript path.
// usage: baseline pio <code.bin> <reps>   -> {"usPerExit": n}
//        baseline create <code.bin> <reps> -> {"usPerVm": n}   (median of reps)
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

static double now_us(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}
static void die(const char *what) { perror(what); exit(2); }

static unsigned char code[4096];
static size_t code_len;

// One VM with 2 MiB of memory and one vCPU in real mode at 0:0x1000; returns exits until HLT.
static long run_guest(int kvm, int mmap_size) {
  int vm = ioctl(kvm, KVM_CREATE_VM, 0);
  if (vm < 0) die("KVM_CREATE_VM");
  size_t mem_size = 2 << 20;
  unsigned char *mem = mmap(NULL, mem_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (mem == MAP_FAILED) die("mmap");
  memcpy(mem + 0x1000, code, code_len);
  struct kvm_userspace_memory_region r = {.slot = 0, .guest_phys_addr = 0, .memory_size = mem_size, .userspace_addr = (unsigned long)mem};
  if (ioctl(vm, KVM_SET_USER_MEMORY_REGION, &r) < 0) die("KVM_SET_USER_MEMORY_REGION");
  int vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);
  if (vcpu < 0) die("KVM_CREATE_VCPU");
  struct kvm_run *run = mmap(NULL, mmap_size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0);
  if (run == MAP_FAILED) die("mmap run");
  struct kvm_sregs s;
  if (ioctl(vcpu, KVM_GET_SREGS, &s) < 0) die("KVM_GET_SREGS");
  struct kvm_segment *segs[] = {&s.cs, &s.ds, &s.es, &s.fs, &s.gs, &s.ss};
  for (int i = 0; i < 6; i++) { segs[i]->base = 0; segs[i]->selector = 0; }
  if (ioctl(vcpu, KVM_SET_SREGS, &s) < 0) die("KVM_SET_SREGS");
  struct kvm_regs regs;
  if (ioctl(vcpu, KVM_GET_REGS, &regs) < 0) die("KVM_GET_REGS");
  regs.rip = 0x1000; regs.rflags = 2; regs.rsp = 0x7000;
  if (ioctl(vcpu, KVM_SET_REGS, &regs) < 0) die("KVM_SET_REGS");
  long exits = 0;
  volatile unsigned sink = 0;
  for (;;) {
    if (ioctl(vcpu, KVM_RUN, 0) < 0) die("KVM_RUN");
    exits++;
    if (run->exit_reason == KVM_EXIT_IO) {
      // Handle the exit as the TypeScript side does: read port and data.
      sink += run->io.port + *((unsigned char *)run + run->io.data_offset);
      continue;
    }
    if (run->exit_reason == KVM_EXIT_HLT) break;
    fprintf(stderr, "unexpected exit %u\n", run->exit_reason);
    exit(2);
  }
  munmap(run, mmap_size);
  close(vcpu);
  close(vm);
  munmap(mem, mem_size);
  return exits;
}

static int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
  if (argc != 4) { fprintf(stderr, "usage: %s pio|create code.bin reps\n", argv[0]); return 2; }
  FILE *f = fopen(argv[2], "rb");
  if (!f) die("code");
  code_len = fread(code, 1, sizeof code, f);
  fclose(f);
  int reps = atoi(argv[3]);
  int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
  if (kvm < 0) die("/dev/kvm");
  int mmap_size = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
  if (!strcmp(argv[1], "pio")) {
    double t0 = now_us();
    long exits = run_guest(kvm, mmap_size);
    double t1 = now_us();
    printf("{\"usPerExit\": %f, \"exits\": %ld}\n", (t1 - t0) / exits, exits);
  } else {
    double *t = calloc(reps, sizeof *t);
    for (int i = 0; i < reps; i++) {
      double t0 = now_us();
      run_guest(kvm, mmap_size);
      t[i] = now_us() - t0;
    }
    qsort(t, reps, sizeof *t, cmp);
    printf("{\"usPerVm\": %f}\n", t[reps / 2]);
  }
  return 0;
}
