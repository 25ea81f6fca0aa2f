// C baseline for bench/kvm-backend: the same guest and the same work as the TypeScript path.
// usage: baseline pio <code.bin> <reps>   -> {"usPerExit": n}
//        baseline create <code.bin> <reps> -> {"usPerVm": n}   (median of reps)
//        baseline pio2 <code.bin> 1   -> {"exitsPerSec": n}  (one VM, two vCPUs in two threads, aggregate)
//        baseline kick <code.bin> <reps> -> {"p99Ms": n, "medianMs": n}  (immediate_exit + SIGRTMIN to the
//                                           thread running the vCPU, until its KVM_RUN returns EINTR; it
//                                           re-enters after each PIO exit, so a guest may exit or spin;
//                                           a fresh VM each time)
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <errno.h>
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


// Two vCPUs of one VM, each in its own thread, running the same code: aggregate exits per second.
struct vcpu_arg { int fd; struct kvm_run *run; long exits; };
static void *vcpu_thread(void *p) {
  struct vcpu_arg *a = p;
  volatile unsigned sink = 0;
  for (;;) {
    if (ioctl(a->fd, KVM_RUN, 0) < 0) die("KVM_RUN");
    a->exits++;
    if (a->run->exit_reason == KVM_EXIT_IO) { sink += a->run->io.port + *((unsigned char *)a->run + a->run->io.data_offset); continue; }
    if (a->run->exit_reason == KVM_EXIT_HLT) break;
    fprintf(stderr, "unexpected exit %u\n", a->run->exit_reason);
    exit(2);
  }
  return NULL;
}

static double run_two(int kvm, int mmap_size) {
  int vm = ioctl(kvm, KVM_CREATE_VM, 0);
  if (vm < 0) die("KVM_CREATE_VM");
  size_t mem_size = 2 << 20;
  unsigned char *mem = mmap(NULL, mem_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (mem == MAP_FAILED) die("mmap");
  memcpy(mem + 0x1000, code, code_len);
  struct kvm_userspace_memory_region r = {.slot = 0, .guest_phys_addr = 0, .memory_size = mem_size, .userspace_addr = (unsigned long)mem};
  if (ioctl(vm, KVM_SET_USER_MEMORY_REGION, &r) < 0) die("KVM_SET_USER_MEMORY_REGION");
  struct vcpu_arg a[2];
  for (int i = 0; i < 2; i++) {
    a[i].fd = ioctl(vm, KVM_CREATE_VCPU, i);
    if (a[i].fd < 0) die("KVM_CREATE_VCPU");
    a[i].run = mmap(NULL, mmap_size, PROT_READ | PROT_WRITE, MAP_SHARED, a[i].fd, 0);
    if (a[i].run == MAP_FAILED) die("mmap run");
    a[i].exits = 0;
    struct kvm_sregs s;
    if (ioctl(a[i].fd, KVM_GET_SREGS, &s) < 0) die("KVM_GET_SREGS");
    struct kvm_segment *segs[] = {&s.cs, &s.ds, &s.es, &s.fs, &s.gs, &s.ss};
    for (int k = 0; k < 6; k++) { segs[k]->base = 0; segs[k]->selector = 0; }
    if (ioctl(a[i].fd, KVM_SET_SREGS, &s) < 0) die("KVM_SET_SREGS");
    struct kvm_regs regs;
    if (ioctl(a[i].fd, KVM_GET_REGS, &regs) < 0) die("KVM_GET_REGS");
    regs.rip = 0x1000; regs.rflags = 2; regs.rsp = 0x7000;
    if (ioctl(a[i].fd, KVM_SET_REGS, &regs) < 0) die("KVM_SET_REGS");
  }
  pthread_t t[2];
  double t0 = now_us();
  for (int i = 0; i < 2; i++) pthread_create(&t[i], NULL, vcpu_thread, &a[i]);
  for (int i = 0; i < 2; i++) pthread_join(t[i], NULL);
  double t1 = now_us();
  for (int i = 0; i < 2; i++) { munmap(a[i].run, mmap_size); close(a[i].fd); }
  close(vm);
  munmap(mem, mem_size);
  return (a[0].exits + a[1].exits) / ((t1 - t0) / 1e6);
}

// kick: a thread runs the guest (re-entering after each PIO exit); the main thread, 3 ms later,
// sets immediate_exit and signals it, and measures until that thread's KVM_RUN has returned EINTR.
static void on_sig(int s) { (void)s; }
struct kick_arg { int fd; struct kvm_run *run; volatile int done; };
static void *kick_thread(void *p) {
  struct kick_arg *a = p;
  int r;
  while ((r = ioctl(a->fd, KVM_RUN, 0)) >= 0 && a->run->exit_reason == KVM_EXIT_IO) {}
  if (r >= 0 || errno != EINTR) { fprintf(stderr, "kick: KVM_RUN returned %d\n", r); exit(2); }
  __atomic_store_n(&a->done, 1, __ATOMIC_RELEASE);
  return NULL;
}
static double kick_once(int kvm, int mmap_size) {
  int vm = ioctl(kvm, KVM_CREATE_VM, 0);
  if (vm < 0) die("KVM_CREATE_VM");
  size_t mem_size = 2 << 20;
  unsigned char *mem = mmap(NULL, mem_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  memcpy(mem + 0x1000, code, code_len);
  struct kvm_userspace_memory_region r = {.slot = 0, .guest_phys_addr = 0, .memory_size = mem_size, .userspace_addr = (unsigned long)mem};
  if (ioctl(vm, KVM_SET_USER_MEMORY_REGION, &r) < 0) die("KVM_SET_USER_MEMORY_REGION");
  int fd = ioctl(vm, KVM_CREATE_VCPU, 0);
  struct kvm_run *run = mmap(NULL, mmap_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  struct kvm_sregs s;
  ioctl(fd, KVM_GET_SREGS, &s);
  struct kvm_segment *segs[] = {&s.cs, &s.ds, &s.es, &s.fs, &s.gs, &s.ss};
  for (int k = 0; k < 6; k++) { segs[k]->base = 0; segs[k]->selector = 0; }
  ioctl(fd, KVM_SET_SREGS, &s);
  struct kvm_regs regs;
  ioctl(fd, KVM_GET_REGS, &regs);
  regs.rip = 0x1000; regs.rflags = 2; regs.rsp = 0x7000;
  ioctl(fd, KVM_SET_REGS, &regs);
  struct kick_arg a = {fd, run, 0};
  pthread_t t;
  pthread_create(&t, NULL, kick_thread, &a);
  usleep(3000);
  double t0 = now_us();
  run->immediate_exit = 1;
  pthread_kill(t, SIGRTMIN);
  while (!__atomic_load_n(&a.done, __ATOMIC_ACQUIRE)) {}
  double dt = now_us() - t0;
  pthread_join(t, NULL);
  munmap(run, mmap_size);
  close(fd);
  close(vm);
  munmap(mem, mem_size);
  return dt / 1000;
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
  } else if (!strcmp(argv[1], "kick")) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sig;  // no SA_RESTART: KVM_RUN must return EINTR
    sigaction(SIGRTMIN, &sa, NULL);
    double *t = calloc(reps, sizeof *t);
    for (int i = 0; i < reps; i++) t[i] = kick_once(kvm, mmap_size);
    qsort(t, reps, sizeof *t, cmp);
    int p = (int)(0.99 * reps + 0.999) - 1;
    printf("{\"p99Ms\": %f, \"medianMs\": %f}\n", t[p < 0 ? 0 : p], t[reps / 2]);
  } else if (!strcmp(argv[1], "pio2")) {
    printf("{\"exitsPerSec\": %f}\n", run_two(kvm, mmap_size));
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
