/*
 * A minimal KVM harness for the cpuid tests: creates a VM whose vCPUs get the KVM_SET_CPUID2
 * tables read from stdin, runs a 16-bit guest on each vCPU that executes CPUID for a list of
 * (leaf, subleaf) queries and stores the results, and prints what each guest saw.
 *
 * stdin:  "q <leaf> <subleaf>" lines (the queries), then "e <vcpu> <function> <index> <flags>
 *         <eax> <ebx> <ecx> <edx>" lines (the kvm_cpuid_entry2 values per vCPU), all hex.
 * stdout: "<vcpu> <leaf> <subleaf> <eax> <ebx> <ecx> <edx>" per query and vCPU, hex.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>

extern const unsigned char guest_start[], guest_end[];
__asm__(
    ".pushsection .rodata\n"
    ".globl guest_start\n"
    "guest_start:\n"
    ".code16\n"
    "  xor %ax, %ax\n"
    "  mov %ax, %ds\n"
    "  mov $0x2000, %si\n"
    "  mov $0x3000, %di\n"
    "1: movl (%si), %eax\n"
    "  cmpl $0xffffffff, %eax\n"
    "  je 2f\n"
    "  movl 4(%si), %ecx\n"
    "  cpuid\n"
    "  movl %eax, (%di)\n"
    "  movl %ebx, 4(%di)\n"
    "  movl %ecx, 8(%di)\n"
    "  movl %edx, 12(%di)\n"
    "  add $8, %si\n"
    "  add $16, %di\n"
    "  jmp 1b\n"
    "2: mov $0x10, %dx\n"
    "  out %al, %dx\n"
    "  hlt\n"
    ".code64\n"
    ".globl guest_end\n"
    "guest_end:\n"
    ".popsection\n");

#define MAXQ 64
#define MAXV 8
#define MAXE 256

static void die(const char *what) {
  fprintf(stderr, "%s: %s\n", what, strerror(errno));
  exit(2);
}

int main(void) {
  unsigned q[MAXQ][2], nq = 0, ne[MAXV] = {0}, nv = 0;
  static struct kvm_cpuid_entry2 ents[MAXV][MAXE];
  char kind[4];
  while (scanf("%3s", kind) == 1) {
    if (kind[0] == 'q') {
      if (nq == MAXQ || scanf("%x %x", &q[nq][0], &q[nq][1]) != 2) return 3;
      nq++;
    } else if (kind[0] == 'e') {
      unsigned v, f, i, fl, a, b, c, d;
      if (scanf("%x %x %x %x %x %x %x %x", &v, &f, &i, &fl, &a, &b, &c, &d) != 8 || v >= MAXV || ne[v] == MAXE) return 3;
      struct kvm_cpuid_entry2 *e = &ents[v][ne[v]++];
      memset(e, 0, sizeof(*e));
      e->function = f; e->index = i; e->flags = fl; e->eax = a; e->ebx = b; e->ecx = c; e->edx = d;
      if (v + 1 > nv) nv = v + 1;
    } else {
      return 3;
    }
  }
  int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
  if (kvm < 0) die("open /dev/kvm");
  int vm = ioctl(kvm, KVM_CREATE_VM, 0);
  if (vm < 0) die("KVM_CREATE_VM");
  size_t memsz = 0x10000;
  unsigned char *mem = mmap(NULL, memsz, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED) die("mmap");
  struct kvm_userspace_memory_region region = {.slot = 0, .guest_phys_addr = 0, .memory_size = memsz, .userspace_addr = (unsigned long)mem};
  if (ioctl(vm, KVM_SET_USER_MEMORY_REGION, &region) < 0) die("KVM_SET_USER_MEMORY_REGION");
  memcpy(mem + 0x1000, guest_start, guest_end - guest_start);
  int runsz = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
  for (unsigned v = 0; v < nv; v++) {
    int vcpu = ioctl(vm, KVM_CREATE_VCPU, v);
    if (vcpu < 0) die("KVM_CREATE_VCPU");
    struct kvm_cpuid2 *cp = calloc(1, sizeof(*cp) + ne[v] * sizeof(struct kvm_cpuid_entry2));
    cp->nent = ne[v];
    memcpy(cp->entries, ents[v], ne[v] * sizeof(struct kvm_cpuid_entry2));
    if (ioctl(vcpu, KVM_SET_CPUID2, cp) < 0) die("KVM_SET_CPUID2");
    struct kvm_mp_state mp = {.mp_state = KVM_MP_STATE_RUNNABLE};
    if (ioctl(vcpu, KVM_SET_MP_STATE, &mp) < 0) die("KVM_SET_MP_STATE");
    struct kvm_run *run = mmap(NULL, runsz, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0);
    if (run == MAP_FAILED) die("mmap kvm_run");
    struct kvm_sregs sregs;
    if (ioctl(vcpu, KVM_GET_SREGS, &sregs) < 0) die("KVM_GET_SREGS");
    sregs.cs.base = 0;
    sregs.cs.selector = 0;
    if (ioctl(vcpu, KVM_SET_SREGS, &sregs) < 0) die("KVM_SET_SREGS");
    struct kvm_regs regs = {.rip = 0x1000, .rflags = 2};
    if (ioctl(vcpu, KVM_SET_REGS, &regs) < 0) die("KVM_SET_REGS");
    memset(mem + 0x2000, 0xff, 0x2000);
    for (unsigned i = 0; i < nq; i++) memcpy(mem + 0x2000 + 8 * i, q[i], 8);
    for (;;) {
      if (ioctl(vcpu, KVM_RUN, 0) < 0) die("KVM_RUN");
      if (run->exit_reason == KVM_EXIT_IO && run->io.port == 0x10) break;
      fprintf(stderr, "vcpu %u: unexpected exit %u\n", v, run->exit_reason);
      return 4;
    }
    for (unsigned i = 0; i < nq; i++) {
      unsigned r[4];
      memcpy(r, mem + 0x3000 + 16 * i, 16);
      printf("%x %x %x %x %x %x %x\n", v, q[i][0], q[i][1], r[0], r[1], r[2], r[3]);
    }
  }
  return 0;
}
