/* Prints KVM_GET_SUPPORTED_CPUID of /dev/kvm as "function index flags eax ebx ecx edx" lines (hex). */
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/ioctl.h>

int main(void) {
  int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
  if (kvm < 0) { perror("open /dev/kvm"); return 2; }
  for (int n = 64; n <= 4096; n *= 2) {
    struct kvm_cpuid2 *c = calloc(1, sizeof(*c) + n * sizeof(struct kvm_cpuid_entry2));
    c->nent = n;
    if (ioctl(kvm, KVM_GET_SUPPORTED_CPUID, c) == 0) {
      for (unsigned i = 0; i < c->nent; i++) {
        struct kvm_cpuid_entry2 *e = &c->entries[i];
        printf("%x %x %x %x %x %x %x\n", e->function, e->index, e->flags, e->eax, e->ebx, e->ecx, e->edx);
      }
      return 0;
    }
    if (errno != E2BIG) { perror("KVM_GET_SUPPORTED_CPUID"); return 3; }
    free(c);
  }
  return 4;
}
