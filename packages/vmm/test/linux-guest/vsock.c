/* A vsock client and server for the Linux guest of linux-init.test.ts (busybox has no AF_VSOCK),
 * built there with gcc -static -nostdlib: without libc it is a few KiB, where a static glibc
 * program is 750 KiB, and the guest kernel unpacks the initramfs at emulated-CPL0 speed.
 * Every line it prints starts with "vsock: " for the test to find.
 *   vsock connect CID PORT MESSAGE   connect, send MESSAGE, shut down writing, print the reply (to EOF)
 *   vsock listen PORT MESSAGE        print "listening PORT" (the host connects then), accept one
 *                                    connection, print its first line, answer MESSAGE and close */
/* Headers for constants and struct sockaddr_vm only: nothing of the C library is linked. */
#include <asm/unistd.h>
#include <sys/socket.h>
#include <linux/vm_sockets.h>

static long sys(long n, long a, long b, long c) {
  long r;
  __asm__ volatile("syscall" : "=a"(r) : "a"(n), "D"(a), "S"(b), "d"(c) : "rcx", "r11", "memory");
  return r;
}

static unsigned long len(const char *s) {
  unsigned long n = 0;
  while (s[n] != 0) n++;
  return n;
}

static int eq(const char *a, const char *b) {
  while (*a != 0 && *a == *b) a++, b++;
  return *a == *b;
}

static unsigned num(const char *s) {
  unsigned v = 0;
  while (*s >= '0' && *s <= '9') v = v * 10 + (unsigned)(*s++ - '0');
  return v;
}

static int send_all(int fd, const char *p, unsigned long n) {
  while (n > 0) {
    long w = sys(__NR_write, fd, (long)p, (long)n);
    if (w <= 0) return -1;
    p += w;
    n -= (unsigned long)w;
  }
  return 0;
}

static void say(const char *a, const char *b) {
  send_all(1, "vsock: ", 7);
  send_all(1, a, len(a));
  send_all(1, b, len(b));
  send_all(1, "\n", 1);
}

static int fail(const char *what, long err) {
  char code[24];
  int i = sizeof code - 1;
  code[i] = 0;
  unsigned long e = (unsigned long)-err;
  do code[--i] = (char)('0' + e % 10), e /= 10; while (e != 0);
  send_all(1, "vsock: ", 7);
  send_all(1, what, len(what));
  send_all(1, " failed, errno ", 15);
  send_all(1, code + i, len(code + i));
  send_all(1, "\n", 1);
  return 1;
}

static char buf[4096];

static int run(int argc, char **argv) {
  struct sockaddr_vm a = {0};
  a.svm_family = AF_VSOCK;
  if (argc == 5 && eq(argv[1], "connect")) {
    long fd = sys(__NR_socket, AF_VSOCK, SOCK_STREAM, 0);
    if (fd < 0) return fail("socket", fd);
    a.svm_cid = num(argv[2]);
    a.svm_port = num(argv[3]);
    long r = sys(__NR_connect, fd, (long)&a, sizeof a);
    if (r != 0) return fail("connect", r);
    if (send_all((int)fd, argv[4], len(argv[4])) != 0) return fail("write", -1);
    sys(__NR_shutdown, fd, SHUT_WR, 0);
    unsigned long got = 0;
    for (long n; got < sizeof buf - 1 && (n = sys(__NR_read, fd, (long)(buf + got), (long)(sizeof buf - 1 - got))) > 0;) got += (unsigned long)n;
    buf[got] = 0;
    say("reply ", buf);
    sys(__NR_close, fd, 0, 0);
    return 0;
  }
  if (argc == 4 && eq(argv[1], "listen")) {
    long s = sys(__NR_socket, AF_VSOCK, SOCK_STREAM, 0);
    if (s < 0) return fail("socket", s);
    a.svm_cid = VMADDR_CID_ANY;
    a.svm_port = num(argv[2]);
    long r = sys(__NR_bind, s, (long)&a, sizeof a);
    if (r != 0) return fail("bind", r);
    r = sys(__NR_listen, s, 1, 0);
    if (r != 0) return fail("listen", r);
    say("listening ", argv[2]);
    long fd = sys(__NR_accept, s, 0, 0);
    if (fd < 0) return fail("accept", fd);
    unsigned long got = 0;
    for (long n; got < sizeof buf - 1 && (n = sys(__NR_read, fd, (long)(buf + got), (long)(sizeof buf - 1 - got))) > 0;) {
      got += (unsigned long)n;
      if (buf[got - 1] == '\n') break;
    }
    if (got > 0 && buf[got - 1] == '\n') got--;
    buf[got] = 0;
    say("accepted ", buf);
    if (send_all((int)fd, argv[3], len(argv[3])) != 0) return fail("write", -1);
    sys(__NR_close, fd, 0, 0);
    sys(__NR_close, s, 0, 0);
    return 0;
  }
  say("usage: vsock connect CID PORT MESSAGE | vsock listen PORT MESSAGE", "");
  return 2;
}

/* The kernel starts us with argc at (%rsp) and argv after it; align the stack for the C code. */
__attribute__((used)) static void start_c(long *sp) {
  sys(__NR_exit, run((int)sp[0], (char **)(sp + 1)), 0, 0);
}
__asm__(".globl _start\n_start:\n  mov %rsp, %rdi\n  and $-16, %rsp\n  call start_c\n  hlt\n");
