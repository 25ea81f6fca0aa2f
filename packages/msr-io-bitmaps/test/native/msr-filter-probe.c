/*
 * Installs a kvm_msr_filter read from stdin on a real VM and reports, for each probe, whether a
 * guest RDMSR/WRMSR of that MSR exits to userspace because of the filter.
 *
 * stdin:  F <filter-flags> <nranges>
 *         R <flags> <base> <nmsrs> <bitmap as hex, may be "-" for none>   (nranges lines)
 *         P <msr> <r|w>                                                    (any number)
 * stdout: SET <ioctl result> <errno>
 *         <msr> <r|w> <filter|allowed>
 *
 * "filter" = the exit came with KVM_MSR_EXIT_REASON_FILTER; "allowed" = the instruction completed
 * in the kernel or exited for another reason (unknown MSR, invalid value), i.e. the filter let it by.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

static void die(const char *what) {
  printf("ERR %s %d\n", what, errno);
  exit(1);
}

int main(void) {
  unsigned flags, nranges;
  if (scanf(" F %u %u", &flags, &nranges) != 2) die("parse-F");
  struct kvm_msr_filter filter;
  memset(&filter, 0, sizeof filter);
  filter.flags = flags;
  for (unsigned i = 0; i < nranges; i++) {
    unsigned rf, base, nmsrs;
    char hex[0x1000 * 2 + 2];
    if (scanf(" R %u %u %u %8193s", &rf, &base, &nmsrs, hex) != 4) die("parse-R");
    size_t n = strcmp(hex, "-") == 0 ? 0 : strlen(hex) / 2;
    uint8_t *bm = calloc(n ? n : 1, 1);
    for (size_t j = 0; j < n; j++) sscanf(hex + 2 * j, "%2hhx", &bm[j]);
    if (i < KVM_MSR_FILTER_MAX_RANGES) {
      filter.ranges[i].flags = rf;
      filter.ranges[i].base = base;
      filter.ranges[i].nmsrs = nmsrs;
      filter.ranges[i].bitmap = bm;
    }
  }

  int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
  if (kvm < 0) die("open");
  int vm = ioctl(kvm, KVM_CREATE_VM, 0);
  if (vm < 0) die("create-vm");
  struct kvm_enable_cap cap;
  memset(&cap, 0, sizeof cap);
  cap.cap = KVM_CAP_X86_USER_SPACE_MSR;
  cap.args[0] = KVM_MSR_EXIT_REASON_FILTER | KVM_MSR_EXIT_REASON_UNKNOWN | KVM_MSR_EXIT_REASON_INVAL;
  if (ioctl(vm, KVM_ENABLE_CAP, &cap) < 0) die("enable-cap");
  int r = ioctl(vm, KVM_X86_SET_MSR_FILTER, &filter);
  printf("SET %d %d\n", r, r < 0 ? errno : 0);
  if (r < 0) return 0;

  size_t memsz = 0x2000;
  uint8_t *mem = mmap(NULL, memsz, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  struct kvm_userspace_memory_region region = {.slot = 0, .guest_phys_addr = 0, .memory_size = memsz, .userspace_addr = (uintptr_t)mem};
  if (ioctl(vm, KVM_SET_USER_MEMORY_REGION, &region) < 0) die("mem");
  int vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);
  if (vcpu < 0) die("vcpu");
  int runsz = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
  struct kvm_run *run = mmap(NULL, runsz, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0);

  unsigned msr;
  char dir;
  while (scanf(" P %u %c", &msr, &dir) == 2) {
    /* Real mode at 0x1000: mov ecx, msr; xor eax, eax; xor edx, edx; rdmsr|wrmsr; hlt */
    uint8_t code[] = {0x66, 0xb9, 0, 0, 0, 0, 0x66, 0x31, 0xc0, 0x66, 0x31, 0xd2, 0x0f, dir == 'r' ? 0x32 : 0x30, 0xf4};
    memcpy(code + 2, &msr, 4);
    memcpy(mem + 0x1000, code, sizeof code);
    struct kvm_sregs sregs;
    if (ioctl(vcpu, KVM_GET_SREGS, &sregs) < 0) die("get-sregs");
    sregs.cs.base = 0;
    sregs.cs.selector = 0;
    if (ioctl(vcpu, KVM_SET_SREGS, &sregs) < 0) die("set-sregs");
    struct kvm_regs regs;
    memset(&regs, 0, sizeof regs);
    regs.rip = 0x1000;
    regs.rflags = 2;
    if (ioctl(vcpu, KVM_SET_REGS, &regs) < 0) die("set-regs");
    const char *verdict = "allowed";
    for (int step = 0; step < 4; step++) {
      if (ioctl(vcpu, KVM_RUN, 0) < 0) die("run");
      if (run->exit_reason == KVM_EXIT_X86_RDMSR || run->exit_reason == KVM_EXIT_X86_WRMSR) {
        if (run->msr.reason == KVM_MSR_EXIT_REASON_FILTER && run->msr.index == msr) verdict = "filter";
        run->msr.error = 0;
        run->msr.data = 0;
        continue;
      }
      break; /* HLT, or anything else: the instruction is over */
    }
    printf("%u %c %s\n", msr, dir, verdict);
  }
  return 0;
}
