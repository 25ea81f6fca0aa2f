// C baseline for bench/uart-output: a minimal VMM that runs the same flat real-mode guest (at
// 0x7c00) and does what tsvmm's console does with the UART's bytes: buffer them and write(2) each
// whole line (or 4 KiB) to stdout. The guest's OUT to 0xf4 ends the run.
// usage: baseline <guest.bin>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

static void die(const char *what) { perror(what); exit(2); }

static unsigned char out[4096];
static size_t out_len;

static void flush_out(void) {
  size_t off = 0;
  while (off < out_len) {
    ssize_t n = write(1, out + off, out_len - off);
    if (n < 0) die("write");
    off += (size_t)n;
  }
  out_len = 0;
}

int main(int argc, char **argv) {
  if (argc != 2) { fprintf(stderr, "usage: %s guest.bin\n", argv[0]); return 2; }
  int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
  if (kvm < 0) die("/dev/kvm");
  int mmap_size = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
  int vm = ioctl(kvm, KVM_CREATE_VM, 0);
  if (vm < 0) die("KVM_CREATE_VM");
  size_t mem_size = 1 << 20;
  unsigned char *mem = mmap(NULL, mem_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (mem == MAP_FAILED) die("mmap");
  FILE *f = fopen(argv[1], "rb");
  if (!f) die("guest");
  size_t len = fread(mem + 0x7c00, 1, 0xa0000 - 0x7c00, f);
  fclose(f);
  if (len == 0) die("guest is empty");
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
  memset(&regs, 0, sizeof regs);
  regs.rip = 0x7c00; regs.rflags = 2; regs.rsp = 0x7c00;
  if (ioctl(vcpu, KVM_SET_REGS, &regs) < 0) die("KVM_SET_REGS");
  for (;;) {
    if (ioctl(vcpu, KVM_RUN, 0) < 0) die("KVM_RUN");
    if (run->exit_reason != KVM_EXIT_IO) {
      if (run->exit_reason == KVM_EXIT_HLT) continue;
      fprintf(stderr, "unexpected exit %u\n", run->exit_reason);
      return 2;
    }
    unsigned char *data = (unsigned char *)run + run->io.data_offset;
    if (run->io.direction == KVM_EXIT_IO_OUT && run->io.port == 0x3f8) {
      for (unsigned i = 0; i < run->io.count; i++) {
        unsigned char b = data[i * run->io.size];
        out[out_len++] = b;
        if (b == '\n' || out_len == sizeof out) flush_out();
      }
    } else if (run->io.direction == KVM_EXIT_IO_OUT && run->io.port == 0xf4) {
      flush_out();
      return (data[0] << 1 | 1) & 0xff;  // the qemu debug-exit convention, as tsvmm's
    } else if (run->io.direction == KVM_EXIT_IO_IN) {
      memset(data, run->io.port == 0x3fd ? 0x60 : 0xff, run->io.size * run->io.count);
    }
  }
}
