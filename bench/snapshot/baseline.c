// C floor of a snapshot restore on this host: the fewest KVM calls that bring a saved 1-vCPU VM
// back until its guest runs again, each step timed on its own, many rounds (median per step).
//   vm      KVM_CREATE_VM (+ TSS and identity-map addresses, as a VMM sets before any vCPU)
//   irqchip KVM_CREATE_IRQCHIP (a VM saved with an in-kernel irqchip needs it; the saved guest never
//           touched the PIT, so tsvmm creates none on restore and neither does this)
//   mmap    the memory file mapped MAP_PRIVATE | MAP_NORESERVE (pages load on first touch)
//   slot    KVM_SET_USER_MEMORY_REGION of that mapping
//   vcpu    KVM_CREATE_VCPU + mmap of its kvm_run
//   state   KVM_SET_SREGS + KVM_SET_REGS
//   run     KVM_RUN until the first exit of a guest whose first instruction is an OUT
//   close   munmap + close of everything (not part of a restore; reported because it is not free)
// Usage: baseline MEMFILE MIB ROUNDS. Prints one JSON object of medians (ms) and the sums.
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define STEPS 8
static const char* names[STEPS] = {"vm", "irqchip", "mmap", "slot", "vcpu", "state", "run", "close"};

static double now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static void die(const char* what) {
  perror(what);
  exit(1);
}

static int cmp(const void* a, const void* b) {
  double x = *(const double*)a, y = *(const double*)b;
  return x < y ? -1 : x > y;
}

int main(int argc, char** argv) {
  if (argc < 4) {
    fprintf(stderr, "usage: %s MEMFILE MIB ROUNDS\n", argv[0]);
    return 2;
  }
  size_t size = (size_t)atoi(argv[2]) << 20;
  int rounds = atoi(argv[3]);
  int file = open(argv[1], O_RDONLY);
  if (file < 0) die("memory file");
  int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
  if (kvm < 0) die("/dev/kvm");
  int run_size = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
  double* t = calloc((size_t)rounds * STEPS, sizeof(double));
  for (int r = 0; r < rounds; r++) {
    double* s = t + (size_t)r * STEPS;
    double t0 = now_ms();
    int vm = ioctl(kvm, KVM_CREATE_VM, 0);
    if (vm < 0) die("KVM_CREATE_VM");
    if (ioctl(vm, KVM_SET_TSS_ADDR, 0xfffbd000UL) < 0) die("KVM_SET_TSS_ADDR");
    __u64 idmap = 0xfffbc000;
    if (ioctl(vm, KVM_SET_IDENTITY_MAP_ADDR, &idmap) < 0) die("KVM_SET_IDENTITY_MAP_ADDR");
    double t1 = now_ms();
    void* mem = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_NORESERVE, file, 0);
    if (mem == MAP_FAILED) die("mmap memory");
    double t2 = now_ms();
    // The slot before the irqchip: registered after KVM_CREATE_IRQCHIP, the same slot took 4-8 ms
    // on this host instead of ~0.1 (measured 2026-12-06); tsvmm's assemble() does the same.
    struct kvm_userspace_memory_region region = {.slot = 0, .guest_phys_addr = 0, .memory_size = size, .userspace_addr = (__u64)(unsigned long)mem};
    if (ioctl(vm, KVM_SET_USER_MEMORY_REGION, &region) < 0) die("KVM_SET_USER_MEMORY_REGION");
    double t3 = now_ms();
    if (ioctl(vm, KVM_CREATE_IRQCHIP, 0) < 0) die("KVM_CREATE_IRQCHIP");
    double t4 = now_ms();
    int vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);
    if (vcpu < 0) die("KVM_CREATE_VCPU");
    struct kvm_run* run = mmap(NULL, (size_t)run_size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0);
    if (run == MAP_FAILED) die("mmap kvm_run");
    double t5 = now_ms();
    // Real mode at 0x1000, where the memory file holds `out %al, $0x10` (what a saved state would be
    // read from: the values are the guest's, the calls are what costs).
    struct kvm_sregs sregs;
    if (ioctl(vcpu, KVM_GET_SREGS, &sregs) < 0) die("KVM_GET_SREGS");
    sregs.cs.base = 0;
    sregs.cs.selector = 0;
    if (ioctl(vcpu, KVM_SET_SREGS, &sregs) < 0) die("KVM_SET_SREGS");
    struct kvm_regs regs;
    memset(&regs, 0, sizeof regs);
    regs.rip = 0x1000;
    regs.rflags = 2;
    if (ioctl(vcpu, KVM_SET_REGS, &regs) < 0) die("KVM_SET_REGS");
    double t6 = now_ms();
    if (ioctl(vcpu, KVM_RUN, 0) < 0) die("KVM_RUN");
    if (run->exit_reason != KVM_EXIT_IO || run->io.port != 0x10) {
      fprintf(stderr, "unexpected exit %u\n", run->exit_reason);
      return 1;
    }
    double t7 = now_ms();
    munmap(run, (size_t)run_size);
    close(vcpu);
    munmap(mem, size);
    close(vm);
    double t8 = now_ms();
    double d[STEPS] = {t1 - t0, t4 - t3, t2 - t1, t3 - t2, t5 - t4, t6 - t5, t7 - t6, t8 - t7};
    memcpy(s, d, sizeof d);
  }
  // A VM made before the snapshot is chosen (VM, irqchip, a slot over an anonymous placeholder,
  // vCPU): a restore then maps the memory file over the slot's addresses (MAP_FIXED; KVM follows
  // the new pages through its MMU notifier, no KVM_SET_USER_MEMORY_REGION), sets the registers
  // and runs. What a pool of ready VMs would cost per restore.
  double* warm = calloc((size_t)rounds, sizeof(double));
  for (int r = 0; r < rounds; r++) {
    int vm = ioctl(kvm, KVM_CREATE_VM, 0);
    if (vm < 0) die("KVM_CREATE_VM");
    if (ioctl(vm, KVM_SET_TSS_ADDR, 0xfffbd000UL) < 0) die("KVM_SET_TSS_ADDR");
    void* mem = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (mem == MAP_FAILED) die("mmap placeholder");
    struct kvm_userspace_memory_region region = {.slot = 0, .guest_phys_addr = 0, .memory_size = size, .userspace_addr = (__u64)(unsigned long)mem};
    if (ioctl(vm, KVM_SET_USER_MEMORY_REGION, &region) < 0) die("KVM_SET_USER_MEMORY_REGION");
    if (ioctl(vm, KVM_CREATE_IRQCHIP, 0) < 0) die("KVM_CREATE_IRQCHIP");
    int vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);
    if (vcpu < 0) die("KVM_CREATE_VCPU");
    struct kvm_run* run = mmap(NULL, (size_t)run_size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0);
    if (run == MAP_FAILED) die("mmap kvm_run");
    struct kvm_sregs sregs;
    if (ioctl(vcpu, KVM_GET_SREGS, &sregs) < 0) die("KVM_GET_SREGS");
    double t0 = now_ms();
    if (mmap(mem, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_FIXED | MAP_NORESERVE, file, 0) != mem) die("mmap MAP_FIXED");
    sregs.cs.base = 0;
    sregs.cs.selector = 0;
    if (ioctl(vcpu, KVM_SET_SREGS, &sregs) < 0) die("KVM_SET_SREGS");
    struct kvm_regs regs;
    memset(&regs, 0, sizeof regs);
    regs.rip = 0x1000;
    regs.rflags = 2;
    if (ioctl(vcpu, KVM_SET_REGS, &regs) < 0) die("KVM_SET_REGS");
    if (ioctl(vcpu, KVM_RUN, 0) < 0) die("KVM_RUN");
    if (run->exit_reason != KVM_EXIT_IO || run->io.port != 0x10) {
      fprintf(stderr, "warm: unexpected exit %u\n", run->exit_reason);
      return 1;
    }
    warm[r] = now_ms() - t0;
    munmap(run, (size_t)run_size);
    close(vcpu);
    munmap(mem, size);
    close(vm);
  }
  qsort(warm, (size_t)rounds, sizeof(double), cmp);

  // Medians per step, and the median of each round's sums (not the sum of medians).
  printf("{\"prepared\": %.4f, ", warm[rounds / 2]);
  double* col = calloc((size_t)rounds, sizeof(double));
  for (int k = 0; k < STEPS; k++) {
    for (int r = 0; r < rounds; r++) col[r] = t[(size_t)r * STEPS + k];
    qsort(col, (size_t)rounds, sizeof(double), cmp);
    printf("\"%s\": %.4f, ", names[k], col[rounds / 2]);
  }
  // bare: VM + slot + vCPU + registers (no irqchip, no first entry); restore: everything a restore
  // of an irqchip VM does until the guest's first exit.
  const int bare[] = {0, 2, 3, 4, 5}, full[] = {0, 1, 2, 3, 4, 5, 6};
  for (int r = 0; r < rounds; r++) {
    col[r] = 0;
    for (int i = 0; i < 5; i++) col[r] += t[(size_t)r * STEPS + bare[i]];
  }
  qsort(col, (size_t)rounds, sizeof(double), cmp);
  printf("\"bare\": %.4f, ", col[rounds / 2]);
  for (int r = 0; r < rounds; r++) {
    col[r] = 0;
    for (int i = 0; i < 7; i++) col[r] += t[(size_t)r * STEPS + full[i]];
  }
  qsort(col, (size_t)rounds, sizeof(double), cmp);
  printf("\"restore\": %.4f, \"rounds\": %d}\n", col[rounds / 2], rounds);
  return 0;
}
