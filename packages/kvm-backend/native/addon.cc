// tsvmm kvm-backend native addon: system calls only. Every function returns -errno instead of
// throwing, so TypeScript decides what an error means and which typed error to raise.
// Mechanisms here: open/close, ioctl, mmap/munmap (zero-copy ArrayBuffers), eventfd, read/write, preadv2,
// TAP devices (open + TUNSETIFF, vnet header size, offloads),
// the address of a buffer (for kernel structs that carry pointers), an 8/16-byte locked
// compare-exchange on a mapping (guest RAM other vCPUs write natively), and a per-vCPU runner thread
// that issues KVM_RUN off the JavaScript thread and can be interrupted with a real-time signal.
#include <napi.h>

#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <signal.h>
#include <string.h>
#include <time.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include <uv.h>
#include <v8.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>
#include <memory>
#include <algorithm>
#include <functional>

namespace {

// KVM_RUN's request number. TypeScript passes it (abi's KVM_IOCTLS, checked against <linux/kvm.h>)
// through setRunRequest() when the addon is loaded, so no ioctl number is kept here.
std::atomic<unsigned long> g_kvm_run{0};

Napi::Value Ret(Napi::Env env, long r) { return Napi::Number::New(env, static_cast<double>(r < 0 ? -errno : r)); }

// ---- fds -------------------------------------------------------------------------------------
// The fds this package opens (/dev/kvm, VMs, vCPUs, eventfds, TAP devices) belong to the
// JavaScript environment that opened them. A worker thread that ends without closing its VMs
// (terminated mid-run) would leave them open for the process's life: three fds and a VM in the
// kernel each time, measured. So each environment keeps the set of its fds, and its cleanup hook
// closes those still open: after the runner threads have stopped (the Dispatcher's hook, added
// later, runs first) and after its own worker threads have ended (Node stops them before any hook).

struct EnvFds {
  napi_env env;
  std::unordered_set<int> fds;
};
thread_local std::unordered_map<napi_env, EnvFds*> t_env_fds;

EnvFds* FdsOf(napi_env env) {
  auto it = t_env_fds.find(env);
  if (it != t_env_fds.end()) return it->second;
  auto* f = new EnvFds{env, {}};
  t_env_fds[env] = f;
  napi_add_env_cleanup_hook(
      env,
      [](void* d) {
        auto* f = static_cast<EnvFds*>(d);
        for (int fd : f->fds) close(fd);
        t_env_fds.erase(f->env);
        delete f;
      },
      f);
  return f;
}

void TrackFd(napi_env env, int fd) {
  if (fd >= 0) FdsOf(env)->fds.insert(fd);
}

// trackFd(fd): an fd made by an ioctl (KVM_CREATE_VM, KVM_CREATE_VCPU) that this environment owns.
Napi::Value TrackFdJs(const Napi::CallbackInfo& info) {
  TrackFd(info.Env(), info[0].As<Napi::Number>().Int32Value());
  return info.Env().Undefined();
}

Napi::Value Open(const Napi::CallbackInfo& info) {
  std::string path = info[0].As<Napi::String>().Utf8Value();
  int flags = info[1].As<Napi::Number>().Int32Value();
  int fd = open(path.c_str(), flags | O_CLOEXEC);
  TrackFd(info.Env(), fd);
  return Ret(info.Env(), fd);
}

Napi::Value Close(const Napi::CallbackInfo& info) {
  int fd = info[0].As<Napi::Number>().Int32Value();
  auto it = t_env_fds.find(info.Env());
  if (it != t_env_fds.end()) it->second->fds.erase(fd);
  return Ret(info.Env(), close(fd));
}

// A signal (a profiler's SIGPROF, a kick meant for another thread's KVM_RUN) must not fail an
// ioctl that merely slept: retry on EINTR, as SA_RESTART would. KVM_RUN is the exception: its EINTR
// is how kick() stops a vCPU, and the caller sees it.
long IoctlRetry(int fd, unsigned long req, unsigned long arg) {
  long r;
  do {
    r = ioctl(fd, req, arg);
  } while (r < 0 && errno == EINTR && req != g_kvm_run.load(std::memory_order_relaxed));
  return r;
}

// ioctl with an integer argument (or none).
Napi::Value Ioctl(const Napi::CallbackInfo& info) {
  int fd = info[0].As<Napi::Number>().Int32Value();
  unsigned long req = static_cast<unsigned long>(info[1].As<Napi::Number>().Uint32Value());
  unsigned long arg = 0;
  if (info.Length() > 2) {
    if (info[2].IsBigInt()) {
      bool lossless;
      arg = info[2].As<Napi::BigInt>().Uint64Value(&lossless);
    } else {
      arg = static_cast<unsigned long>(info[2].As<Napi::Number>().Int64Value());
    }
  }
  return Ret(info.Env(), IoctlRetry(fd, req, arg));
}

bool BytesOf(const Napi::Value& v, uint8_t** data, size_t* len) {
  if (v.IsTypedArray()) {
    auto ta = v.As<Napi::TypedArray>();
    *data = static_cast<uint8_t*>(ta.ArrayBuffer().Data()) + ta.ByteOffset();
    *len = ta.ByteLength();
    return true;
  }
  if (v.IsArrayBuffer()) {
    auto ab = v.As<Napi::ArrayBuffer>();
    *data = static_cast<uint8_t*>(ab.Data());
    *len = ab.ByteLength();
    return true;
  }
  return false;
}

// ioctl whose argument is a pointer to the bytes of a Buffer (in, out or both).
Napi::Value IoctlBuf(const Napi::CallbackInfo& info) {
  int fd = info[0].As<Napi::Number>().Int32Value();
  unsigned long req = static_cast<unsigned long>(info[1].As<Napi::Number>().Uint32Value());
  uint8_t* data;
  size_t len;
  if (!BytesOf(info[2], &data, &len)) return Napi::Number::New(info.Env(), -EFAULT);
  return Ret(info.Env(), IoctlRetry(fd, req, reinterpret_cast<unsigned long>(data)));
}

Napi::Value Address(const Napi::CallbackInfo& info) {
  uint8_t* data;
  size_t len;
  if (!BytesOf(info[0], &data, &len)) return Napi::BigInt::New(info.Env(), static_cast<uint64_t>(0));
  return Napi::BigInt::New(info.Env(), static_cast<uint64_t>(reinterpret_cast<uintptr_t>(data)));
}

// compareExchange(view, offset, expected, desired): one locked compare-exchange of 8 or 16 bytes
// at view[offset] (guest RAM shared with running vCPUs, so a read-compare-write from JavaScript
// would race them). 1 when it stored `desired`, 0 when it did not; either way `expected` ends
// holding the bytes that were there. -EINVAL for a size other than 8/16 or sizes that differ,
// -EFAULT outside the view, -EINVAL for an address not aligned to the size (a locked access that
// crosses a cache line is a split lock, which the kernel may refuse).
Napi::Value CompareExchange(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint8_t *view, *exp, *des;
  size_t len, elen, dlen;
  if (!BytesOf(info[0], &view, &len) || !BytesOf(info[2], &exp, &elen) || !BytesOf(info[3], &des, &dlen)) return Napi::Number::New(env, -EFAULT);
  // A view N-API cannot resolve (one over a SharedArrayBuffer) leaves an exception pending and no
  // valid pointer: never touch memory then.
  if (env.IsExceptionPending()) return env.Undefined();
  double off = info[1].As<Napi::Number>().DoubleValue();
  if (elen != dlen || (elen != 8 && elen != 16)) return Napi::Number::New(env, -EINVAL);
  if (!(off >= 0) || off > static_cast<double>(len) || static_cast<double>(static_cast<size_t>(off)) != off || static_cast<size_t>(off) > len - elen || len < elen) return Napi::Number::New(env, -EFAULT);
  uint8_t* p = view + static_cast<size_t>(off);
  if (reinterpret_cast<uintptr_t>(p) % elen != 0) return Napi::Number::New(env, -EINVAL);
  uint64_t e[2], d[2];
  memcpy(e, exp, elen);
  memcpy(d, des, elen);
  bool ok;
  if (elen == 8) {
    ok = __atomic_compare_exchange_n(reinterpret_cast<uint64_t*>(p), &e[0], d[0], false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
  } else {
    // Inline CMPXCHG16B: the build has no -mcx16, and libatomic's 16-byte path may take a lock
    // that a vCPU running natively would not honour.
    __asm__ __volatile__("lock cmpxchg16b %1"
                         : "=@ccz"(ok), "+m"(*reinterpret_cast<volatile uint64_t(*)[2]>(p)), "+a"(e[0]), "+d"(e[1])
                         : "b"(d[0]), "c"(d[1])
                         : "memory");
  }
  memcpy(exp, e, elen);
  return Napi::Number::New(env, ok ? 1 : 0);
}

Napi::Value EventFd(const Napi::CallbackInfo& info) {
  unsigned int init = info[0].As<Napi::Number>().Uint32Value();
  int flags = info[1].As<Napi::Number>().Int32Value();
  int fd = eventfd(init, flags | EFD_CLOEXEC);
  TrackFd(info.Env(), fd);
  return Ret(info.Env(), fd);
}

Napi::Value Read(const Napi::CallbackInfo& info) {
  int fd = info[0].As<Napi::Number>().Int32Value();
  uint8_t* data;
  size_t len;
  if (!BytesOf(info[1], &data, &len)) return Napi::Number::New(info.Env(), -EFAULT);
  return Ret(info.Env(), read(fd, data, len));
}

Napi::Value Write(const Napi::CallbackInfo& info) {
  int fd = info[0].As<Napi::Number>().Int32Value();
  uint8_t* data;
  size_t len;
  if (!BytesOf(info[1], &data, &len)) return Napi::Number::New(info.Env(), -EFAULT);
  return Ret(info.Env(), write(fd, data, len));
}

// preadv2(fd, view, position, flags): one preadv2 into the whole of `view` (its bounds are the
// view's own), bytes read or -errno. With RWF_NOWAIT a buffered read returns what the page cache
// holds and fails with EAGAIN instead of waiting for the disk, so it may run on the event loop.
// EINTR is returned, not retried: the caller's fallback (the thread pool) handles it.
Napi::Value Preadv2(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = info[0].As<Napi::Number>().Int32Value();
  uint8_t* data;
  size_t len;
  if (!BytesOf(info[1], &data, &len)) return Napi::Number::New(env, -EFAULT);
  // A view N-API cannot resolve (one over a SharedArrayBuffer) leaves an exception pending.
  if (env.IsExceptionPending()) return env.Undefined();
  double pos = info[2].As<Napi::Number>().DoubleValue();
  if (!(pos >= 0) || pos > 9007199254740991.0 || static_cast<double>(static_cast<off_t>(pos)) != pos) return Napi::Number::New(env, -EINVAL);
  int flags = info[3].As<Napi::Number>().Int32Value();
  struct iovec iov = {data, len};
  return Ret(env, preadv2(fd, &iov, 1, static_cast<off_t>(pos), flags));
}

// ---- TAP devices ------------------------------------------------------------------------------
// /dev/net/tun opened non-blocking and attached to an interface with TUNSETIFF. The caller chooses
// the IFF_* flags; the kernel's answer (and the interface name it chose) goes back unchanged.

// openTap(name, flags): { fd, name } or -errno. The fd is closed on every failure.
Napi::Value OpenTap(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string name = info[0].As<Napi::String>().Utf8Value();
  int flags = info[1].As<Napi::Number>().Int32Value();
  if (name.size() >= IFNAMSIZ) return Napi::Number::New(env, -EINVAL);
  int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) return Napi::Number::New(env, -errno);
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  memcpy(ifr.ifr_name, name.data(), name.size());
  ifr.ifr_flags = static_cast<short>(flags);
  if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
    int e = errno;
    close(fd);
    return Napi::Number::New(env, -e);
  }
  TrackFd(env, fd);
  Napi::Object out = Napi::Object::New(env);
  out.Set("fd", fd);
  out.Set("name", std::string(ifr.ifr_name, strnlen(ifr.ifr_name, IFNAMSIZ)));
  return out;
}

// tapGetIff(fd): { name, flags } (TUNGETIFF) or -errno.
Napi::Value TapGetIff(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  if (ioctl(info[0].As<Napi::Number>().Int32Value(), TUNGETIFF, &ifr) < 0) return Napi::Number::New(env, -errno);
  Napi::Object out = Napi::Object::New(env);
  out.Set("name", std::string(ifr.ifr_name, strnlen(ifr.ifr_name, IFNAMSIZ)));
  out.Set("flags", static_cast<int>(static_cast<unsigned short>(ifr.ifr_flags)));
  return out;
}

Napi::Value TapSetVnetHdrSize(const Napi::CallbackInfo& info) {
  int size = info[1].As<Napi::Number>().Int32Value();
  return Ret(info.Env(), ioctl(info[0].As<Napi::Number>().Int32Value(), TUNSETVNETHDRSZ, &size));
}

// tapGetVnetHdrSize(fd): the size or -errno.
Napi::Value TapGetVnetHdrSize(const Napi::CallbackInfo& info) {
  int size = 0;
  if (ioctl(info[0].As<Napi::Number>().Int32Value(), TUNGETVNETHDRSZ, &size) < 0) return Napi::Number::New(info.Env(), -errno);
  return Napi::Number::New(info.Env(), size);
}

Napi::Value TapSetOffload(const Napi::CallbackInfo& info) {
  unsigned long flags = static_cast<unsigned long>(info[1].As<Napi::Number>().Uint32Value());
  return Ret(info.Env(), ioctl(info[0].As<Napi::Number>().Int32Value(), TUNSETOFFLOAD, flags));
}

// ---- mappings ----------------------------------------------------------------------------------
// A mapping is exposed as an external ArrayBuffer. munmap() detaches the ArrayBuffer before
// unmapping, so every view of it (Buffers, slices kept by careless code) becomes zero-length
// instead of pointing at unmapped memory: a stale access reads nothing rather than crashing.
//
// The ArrayBuffer is made through V8 with BackingStore::EmptyDeleter, and the munmap of a mapping
// nobody unmapped runs from a finalizer (napi_add_finalizer) instead of the backing store's
// deleter. Why: V8 counts the length of every ArrayBuffer with a real deleter as memory the
// embedder allocated, and past ~64 MiB over its level at the last full GC it runs a scavenge and
// a full mark-compact ("external memory pressure"). A mapping is not such an allocation (guest RAM
// is mostly untouched, MAP_NORESERVE or a file's page cache), yet counting 128 MiB of it made every
// VM created or restored pay one or two full GCs of 12-28 ms (measured on this host). V8 leaves
// backing stores with the empty deleter out of that count.

//
// A mapping can also be shared with other threads (worker threads' own JavaScript environments):
// shareMapping() makes a SharedArrayBuffer over it, which cannot be detached. So while any such
// buffer lives, the owner's munmap (or its finalizer) does not unmap: it replaces the range with
// fresh anonymous memory (MAP_FIXED), which gives the guest's pages back to the kernel at once and
// leaves a stale access reading zeros, never a fault; the range is unmapped when the last shared
// buffer is freed (its backing store's deleter, on whichever thread drops it last).

struct Mapping {
  void* addr;
  size_t len;
  bool unmapped;   // the owner let go: munmap() or its finalizer; out of g_maps
  bool finalized;  // the owner's ArrayBuffer is gone (its finalizer ran)
  int shares;      // SharedArrayBuffers over it still alive, in any thread
};
std::mutex g_maps_mu;
std::unordered_map<void*, Mapping*> g_maps;

// With g_maps_mu held: the owner lets go of m.
void ReleaseMapping(Mapping* m) {
  if (m->unmapped) return;
  m->unmapped = true;
  g_maps.erase(m->addr);
  if (m->shares == 0) {
    munmap(m->addr, m->len);
    return;
  }
  // If the kernel refuses the replacement the old pages stay until the last share goes: memory
  // kept longer, still nothing unmapped under a live buffer.
  mmap(m->addr, m->len, PROT_READ | PROT_WRITE, MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
}

void FinalizeMapping(napi_env, void* data, void*) {
  auto* m = static_cast<Mapping*>(data);
  std::lock_guard<std::mutex> lock(g_maps_mu);
  ReleaseMapping(m);
  m->finalized = true;
  if (m->shares == 0) delete m;
}

void ShareDeleter(void*, size_t, void* data) {
  auto* m = static_cast<Mapping*>(data);
  std::lock_guard<std::mutex> lock(g_maps_mu);
  if (--m->shares > 0) return;
  if (m->unmapped) munmap(m->addr, m->len);
  if (m->finalized) delete m;
}

// shareMapping(address: bigint, length): a SharedArrayBuffer over the live mapping that starts at
// `address` and is exactly `length` bytes long (one this addon made and nobody unmapped), or
// -EINVAL. Called on the thread that will use it, so its length is counted there (V8 counts a
// buffer with a real deleter as that isolate's external memory; see above).
Napi::Value ShareMapping(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsBigInt() || !info[1].IsNumber()) return Napi::Number::New(env, -EINVAL);
  bool lossless = false;
  uint64_t a = info[0].As<Napi::BigInt>().Uint64Value(&lossless);
  int64_t len = info[1].As<Napi::Number>().Int64Value();
  void* addr = reinterpret_cast<void*>(static_cast<uintptr_t>(a));
  Mapping* m = nullptr;
  {
    std::lock_guard<std::mutex> lock(g_maps_mu);
    auto it = g_maps.find(addr);
    if (!lossless || it == g_maps.end() || len <= 0 || it->second->len != static_cast<size_t>(len)) return Napi::Number::New(env, -EINVAL);
    m = it->second;
    m->shares++;
  }
  std::shared_ptr<v8::BackingStore> store = v8::SharedArrayBuffer::NewBackingStore(addr, m->len, ShareDeleter, m);
  v8::Local<v8::SharedArrayBuffer> local = v8::SharedArrayBuffer::New(v8::Isolate::GetCurrent(), store);
  return Napi::Value(env, reinterpret_cast<napi_value>(*local));
}

Napi::Value Mmap(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = info[0].As<Napi::Number>().Int32Value();
  size_t len = static_cast<size_t>(info[1].As<Napi::Number>().Int64Value());
  int prot = info[2].As<Napi::Number>().Int32Value();
  int flags = info[3].As<Napi::Number>().Int32Value();
  off_t off = static_cast<off_t>(info[4].As<Napi::Number>().Int64Value());
  if (len == 0) return Napi::Number::New(env, -EINVAL);
  void* addr = mmap(nullptr, len, prot, flags, fd, off);
  if (addr == MAP_FAILED) return Napi::Number::New(env, -errno);
  auto* m = new Mapping{addr, len, false, false, 0};
  v8::Isolate* isolate = v8::Isolate::GetCurrent();
  std::shared_ptr<v8::BackingStore> store = v8::ArrayBuffer::NewBackingStore(addr, len, v8::BackingStore::EmptyDeleter, nullptr);
  v8::Local<v8::ArrayBuffer> local = v8::ArrayBuffer::New(isolate, store);
  // A napi_value is a v8::Local's slot (Node's JsValueFromV8LocalValue is this very cast).
  napi_value ab = reinterpret_cast<napi_value>(*local);
  napi_status st = napi_add_finalizer(env, ab, m, FinalizeMapping, nullptr, nullptr);
  if (st != napi_ok) {
    napi_detach_arraybuffer(env, ab);
    munmap(addr, len);
    delete m;
    return Napi::Number::New(env, -ENOMEM);
  }
  {
    std::lock_guard<std::mutex> lock(g_maps_mu);
    g_maps[addr] = m;
  }
  return Napi::Value(env, ab);
}

Napi::Value Munmap(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsArrayBuffer()) return Napi::Number::New(env, -EINVAL);
  auto ab = info[0].As<Napi::ArrayBuffer>();
  void* addr = ab.Data();
  Mapping* m = nullptr;
  {
    std::lock_guard<std::mutex> lock(g_maps_mu);
    auto it = g_maps.find(addr);
    if (it == g_maps.end() || addr == nullptr) return Napi::Number::New(env, -EINVAL);
    m = it->second;
    if (m->shares == 0) {
      g_maps.erase(it);
      m->unmapped = true;
    } else {
      ReleaseMapping(m);
      m = nullptr;
    }
  }
  // Detaching may run the finalizer (which frees m) right here: do not touch m afterwards.
  size_t len = m == nullptr ? 0 : m->len;
  napi_detach_arraybuffer(env, ab);
  return m == nullptr ? Napi::Number::New(env, 0) : Ret(env, munmap(addr, len));
}

// ---- runner threads ----------------------------------------------------------------------------
// One native thread per vCPU issues KVM_RUN; exits are handed to the JavaScript thread of the
// environment that created the runner. The hand-off, not KVM, was the cost of the asynchronous
// path (a futex wake-up of the sleeping JavaScript thread, then a Promise, a microtask and a new
// request per exit), so:
//  - every runner of an environment posts to one Dispatcher (a mutex-guarded ready list and one
//    uv_async); the JavaScript callback's return value says whether to re-enter KVM_RUN at once
//    (CONTINUE) or to wait for the next run() (STOP): one hop per exit, no request in between;
//  - once woken, the JavaScript thread keeps draining for a short while: after handling an exit
//    it polls the ready list for g_drain_spin µs, so an exit that follows within that time is
//    taken without any wake-up. It returns to the event loop after g_slice µs at most, so timers
//    and I/O keep their turn, and it spins only while exits keep coming;
//  - the runner polls for its next go-ahead for g_runner_spin µs before sleeping on a condition
//    variable, which saves the futex wake-up in the other direction;
//  - one vCPU that exits back to back (kInlineAfterShortRuns runs in a row, each under
//    kShortRunMicros) has its KVM_RUN issued by the JavaScript thread itself while it drains (the
//    "inline" vCPU): the thread would only wait for that exit otherwise, and on a machine with as
//    many busy vCPUs as cores a third busy thread costs every vCPU its share. KVM lets any thread
//    of the process issue KVM_RUN (measured here: alternating threads every exit costs ~1 µs);
//    a per-thread timer (timer_create, SIGEV_THREAD_ID) signals this thread kLongRunMicros after
//    the slice, so an inline KVM_RUN whose guest stops exiting ends with EINTR and the vCPU goes
//    back to its runner thread. At the end of a slice the inline vCPU waits for the next turn of
//    the loop, which is posted at once.
// kick() and close() come from the JavaScript thread, so never while it is inside an inline
// KVM_RUN: they signal the runner thread as before, and immediate_exit (set by TypeScript) covers
// a kick that lands before KVM_RUN, whichever thread issues it.

// After a call into JavaScript failed: an Error it threw is reported as uncaught (true); nothing
// thrown, or no Error, means the environment can no longer run JavaScript (a worker being
// terminated), and there is nobody to report to (false).
bool ReportThrown(napi_env env) {
  bool pending = false;
  napi_value e = nullptr;
  bool isError = false;
  if (napi_is_exception_pending(env, &pending) == napi_ok && pending && napi_get_and_clear_last_exception(env, &e) == napi_ok) {
    napi_is_error(env, e, &isError);
  }
  if (isError) napi_fatal_exception(env, e);
  return isError;
}

// The slice timer of one JavaScript thread (Dispatcher below), as its signal handler sees it:
// si_value points here. Never freed: a signal the timer queued may be delivered after
// timer_delete, and there is one per JavaScript environment.
struct SliceTimer {
  timer_t timer{};
  volatile sig_atomic_t in_run = 0;  // the thread is inside an inline KVM_RUN (or about to enter it)
  volatile sig_atomic_t fired = 0;   // the timer has expired since it was last armed
};

// SIGRTMIN: a kick (pthread_kill) only has to make KVM_RUN return EINTR. A slice timer's expiry
// outside KVM_RUN has nothing to end: the timer is stopped here, or, periodic, it would go on
// interrupting whatever the thread runs next every 100 µs until the drain ends — and a run's
// awaiters run inside the drain: a blocking call there (spawnSync, a sync read) took ~10k signals
// a second, ~17% of a core, and slowed the C program spawnSync ran by 20–35% (measured).
void KickOrSliceSignal(int, siginfo_t* info, void*) {
  if (info == nullptr || info->si_code != SI_TIMER) return;
  auto* t = static_cast<SliceTimer*>(info->si_value.sival_ptr);
  if (t == nullptr) return;
  t->fired = 1;
  if (t->in_run == 0) {
    int saved = errno;
    struct itimerspec off = {};
    timer_settime(t->timer, 0, &off, nullptr);  // async-signal-safe (POSIX)
    errno = saved;
  }
}

int g_kick_signal = 0;

void InstallKickSignal() {
  g_kick_signal = SIGRTMIN;
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = KickOrSliceSignal;
  sigemptyset(&sa.sa_mask);
  // SA_RESTART: KVM_RUN returns -EINTR itself (never -ERESTARTSYS), so it still ends on the signal,
  // while any other system call the signal lands in is restarted. That matters since the
  // JavaScript thread runs a vCPU too (below) and a slice timer may fire just after it left KVM_RUN.
  sa.sa_flags = SA_RESTART | SA_SIGINFO;
  sigaction(g_kick_signal, &sa, nullptr);
}

using Clock = std::chrono::steady_clock;

int EnvInt(const char* name, int dflt) {
  const char* v = getenv(name);
  return v ? atoi(v) : dflt;
}
int g_drain_spin = EnvInt("TSVMM_DRAIN_SPIN_US", 30);
int g_runner_spin = EnvInt("TSVMM_RUNNER_SPIN_US", 60);
int g_slice = EnvInt("TSVMM_SLICE_US", 400);
int g_yield = EnvInt("TSVMM_YIELD", 1);
int g_inline = EnvInt("TSVMM_INLINE_VCPU", 1);
int g_rotate = EnvInt("TSVMM_INLINE_ROTATE", 8);
int g_pending_first = EnvInt("TSVMM_PENDING_FIRST", 1);

// A vCPU runs on the JavaScript thread only after this many KVM_RUNs in a row each shorter than
// kShortRunMicros: one that computes for long stretches would hold every other vCPU's exits.
constexpr int kInlineAfterShortRuns = 4;
constexpr int kShortRunMicros = 50;
// An inline KVM_RUN still in the guest this long after its slice ended is interrupted, and the vCPU
// goes back to its runner thread.
constexpr int kLongRunMicros = 200;

inline void CpuRelax() {
  if (g_yield) sched_yield();
  else __builtin_ia32_pause();
}

class Runner;

// What a Dispatcher hands to JavaScript besides runners' exits: a vCPU worker's forwarded exit
// (ForwardPort below). Kept apart from the runners so their path has no indirection.
class Postable {
 public:
  virtual ~Postable() = default;
  // JavaScript thread, from Dispatcher::Drain.
  virtual void Deliver(Napi::Env env) = 0;
};

// What the JavaScript callback returns for an exit.
constexpr int kContinue = 0;  // re-enter KVM_RUN now
// any other value: stop; the runner waits for run()

class Dispatcher {
 public:
  explicit Dispatcher(napi_env env) : env_(env), tid_(static_cast<pid_t>(syscall(SYS_gettid))) {
    uv_loop_t* loop = nullptr;
    napi_get_uv_event_loop(env, &loop);
    uv_async_init(loop, &async_, [](uv_async_t* a) { static_cast<Dispatcher*>(a->data)->Drain(); });
    async_.data = this;
    uv_unref(reinterpret_cast<uv_handle_t*>(&async_));
    napi_add_env_cleanup_hook(env, [](void* d) { static_cast<Dispatcher*>(d)->Teardown(); }, this);
  }

  static Dispatcher* For(napi_env env);

  // Runner thread (or the JavaScript thread after an inline KVM_RUN): an exit is ready.
  void Post(Runner* r) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      ready_.push_back(r);
      count_.fetch_add(1, std::memory_order_seq_cst);
    }
    // Dekker pair with Drain(): either the drainer still spins and sees count_, or it has left
    // and we wake it. uv_async_send coalesces.
    if (!hot_.load(std::memory_order_seq_cst)) uv_async_send(&async_);
  }

  // Any thread: a forward port has something for JavaScript; as Post.
  void PostPort(Postable* p) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      port_ready_.push_back(p);
      count_.fetch_add(1, std::memory_order_seq_cst);
    }
    // Dekker pair with Drain(): either the drainer still spins and sees count_, or it has left
    // and we wake it. uv_async_send coalesces.
    if (!hot_.load(std::memory_order_seq_cst)) uv_async_send(&async_);
  }

  // JavaScript thread: a runner closed; drop it from the ready list.
  void Forget(Runner* r) {
    std::lock_guard<std::mutex> lock(mu_);
    Drop(ready_, batch_, r);
    if (inline_ == r) inline_ = nullptr;
    if (sticky_ == r) sticky_ = nullptr;
    if (other_ == r) other_ = nullptr;
    runners_.erase(r);
  }

  void Register(Runner* r) { runners_.insert(r); }
  // Forward ports: cut off from their workers when the environment goes.
  void RegisterPort(Postable* p, std::function<void()> detach) { ports_[p] = std::move(detach); }
  // JavaScript thread: a forward port closed; nothing of it is delivered any more.
  void ForgetPort(Postable* p) {
    std::lock_guard<std::mutex> lock(mu_);
    ports_.erase(p);
    Drop(port_ready_, port_batch_, p);
  }

  // Runners with a KVM_RUN in flight keep the loop (the process) alive.
  void Active(int delta) {
    active_ += delta;
    if (active_ > 0) uv_ref(reinterpret_cast<uv_handle_t*>(&async_));
    else uv_unref(reinterpret_cast<uv_handle_t*>(&async_));
  }

  void Drain();
  // The slice timer's shared state; set once the timer exists (RunHere runs only after that).
  SliceTimer* Slice() const { return slice_; }
  // JavaScript cannot run in this environment any more (it is being torn down): no exit is
  // delivered or run inline from now on; the cleanup hook stops the runners.
  void Abandon() { abandoned_ = true; }
  std::function<void()> forget_;

 private:
  void Teardown();
  // The slice timer: SIGRTMIN to this thread while it runs a vCPU, so a KVM_RUN on the JavaScript
  // thread ends with the slice even if the guest never exits. Periodic after the first expiry, in
  // case one lands just before KVM_RUN is entered; an expiry outside KVM_RUN stops it
  // (KickOrSliceSignal), and RunHere does not enter KVM_RUN once it has fired.
  bool ArmSliceTimer(Clock::time_point slice_end);
  void DisarmSliceTimer();

  // With mu_ held: `x` out of a ready list (and its count) and out of the batch being delivered.
  template <typename T>
  void Drop(std::vector<T*>& ready, std::vector<T*>& batch, T* x) {
    for (auto it = ready.begin(); it != ready.end();) {
      if (*it == x) {
        it = ready.erase(it);
        count_.fetch_sub(1, std::memory_order_relaxed);
      } else {
        ++it;
      }
    }
    for (auto*& b : batch) if (b == x) b = nullptr;
  }

  napi_env env_;
  pid_t tid_;
  uv_async_t async_;
  std::mutex mu_;
  std::vector<Runner*> ready_;
  std::vector<Runner*> batch_;
  std::atomic<int> count_{0};
  std::atomic<bool> hot_{false};
  std::unordered_set<Runner*> runners_;
  Runner* inline_ = nullptr;  // the runner whose next KVM_RUN this thread issues itself
  Runner* sticky_ = nullptr;  // the last one it did: preferred, so two vCPUs do not trade places
  Runner* other_ = nullptr;   // this slice: another vCPU exiting back to back (the next inline one)
  int inline_slices_ = 0;     // slices in a row the inline vCPU has ended as the inline one
  SliceTimer* slice_ = nullptr;
  bool has_timer_ = false;
  bool timer_failed_ = false;
  int active_ = 0;
  bool draining_ = false;
  bool abandoned_ = false;
  // Forward ports (after the members above, whose places the runners' path was measured with).
  std::vector<Postable*> port_ready_;
  std::vector<Postable*> port_batch_;
  std::unordered_map<Postable*, std::function<void()>> ports_;
};

class Runner : public Napi::ObjectWrap<Runner> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "Runner",
                       {InstanceMethod("run", &Runner::Run), InstanceMethod("kick", &Runner::Kick),
                        InstanceMethod("close", &Runner::Close)});
  }

  explicit Runner(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Runner>(info) {
    fd_ = info[0].As<Napi::Number>().Int32Value();
    callback_ = Napi::Persistent(info[1].As<Napi::Function>());
    // The vCPU's kvm_run mapping and the offset of immediate_exit in it (from TypeScript's layout):
    // without them this vCPU never runs on the JavaScript thread.
    if (info.Length() >= 4 && info[2].IsTypedArray() && info[3].IsNumber()) {
      Napi::Uint8Array run = info[2].As<Napi::Uint8Array>();
      int64_t off = info[3].As<Napi::Number>().Int64Value();
      if (off >= 0 && static_cast<size_t>(off) < run.ByteLength()) {
        immediate_exit_ = reinterpret_cast<volatile uint8_t*>(run.Data() + off);
        run_ref_ = Napi::Persistent(info[2].As<Napi::Object>());
      }
    }
    dispatcher_ = Dispatcher::For(info.Env());
    dispatcher_->Register(this);
    // Not waited for: a thread start takes milliseconds on a loaded host, and nothing here needs
    // the thread running yet (run() leaves it a go-ahead; a kick before it runs is a pending
    // signal plus immediate_exit). Its id is known as soon as it exists.
    std::lock_guard<std::mutex> lock(mu_);
    thread_ = std::thread([this] { Loop(); });
    tid_ = thread_.native_handle();
    started_ = true;
  }

  ~Runner() override { Stop(); }

  // JavaScript thread, from Dispatcher::Drain: hand the exit to JavaScript. True when the run goes
  // on (the caller then re-enters KVM_RUN, on the runner thread or its own); false when it ended.
  bool Deliver(Napi::Env env) {
    Napi::HandleScope scope(env);
    Ref();  // the callback may close this runner and drop the last JavaScript reference to it
    bool more = false;
    {
      // Microtasks (a resolved run's awaiters) run when this scope closes: after the run has been
      // marked ended, so they may start the next run().
      Napi::CallbackScope cb(env, context());
      // The C call, not FunctionReference::Call: that one answers a failed call by throwing, and
      // in an environment that can no longer run JavaScript (a worker being terminated) the throw
      // fails too and aborts the whole process (seen: terminating a worker while its vCPU ran).
      napi_value arg = Napi::Number::New(env, static_cast<double>(result_));
      napi_value ret = nullptr;
      napi_status st = napi_call_function(env, Value(), callback_.Value(), 1, &arg, &ret);
      int code = 1;
      if (st != napi_ok) {
        // The TypeScript side never throws here; if it did, end the run and report it as uncaught.
        // Nothing thrown (or no Error) means JavaScript cannot run here any more: stop draining.
        if (!ReportThrown(env)) dispatcher_->Abandon();
      } else {
        napi_valuetype type;
        int32_t value;
        if (napi_typeof(env, ret, &type) == napi_ok && type == napi_number && napi_get_value_int32(env, ret, &value) == napi_ok) code = value;
      }
      if (!quit_) {
        if (code == kContinue) {
          more = true;
        } else {
          inflight_ = false;
          dispatcher_->Active(-1);
        }
      }
    }
    Unref();
    return more && !quit_;
  }

  // JavaScript thread: let the runner thread issue the next KVM_RUN.
  void Go() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      go_ = true;
      poke_.store(true, std::memory_order_release);
    }
    if (sleeping_.load(std::memory_order_acquire)) cv_.notify_one();
  }

  // Whether the JavaScript thread may issue this vCPU's next KVM_RUN: it has exited quickly again
  // and again (a guest talking to its devices), so this thread would wait for it anyway.
  bool Inlinable() const {
    return g_inline && immediate_exit_ != nullptr && short_runs_.load(std::memory_order_relaxed) >= kInlineAfterShortRuns;
  }

  enum class Inline { kExit, kHandBack, kGone };

  // JavaScript thread, from Dispatcher::Drain, while the runner thread waits for its go-ahead:
  // KVM_RUN here. An exit is posted like the runner thread's; an EINTR nobody asked for (the
  // slice timer, or any other signal) hands the vCPU back to its runner without a word to
  // JavaScript, since re-entering is what JavaScript would have asked for.
  Inline RunHere() {
    if (quit_) return Inline::kGone;
    // immediate_exit is only written on this thread (kick() from JavaScript): set before the
    // call, the EINTR is the kick's and JavaScript must see it.
    bool kicked = *immediate_exit_ != 0;
    SliceTimer* slice = dispatcher_->Slice();
    // in_run before fired is read: an expiry after the check finds in_run set and leaves the
    // periodic timer armed, so its next expiry ends the KVM_RUN below. One before it stopped the
    // timer: the slice is over, the runner thread takes this KVM_RUN.
    slice->in_run = 1;
    std::atomic_signal_fence(std::memory_order_seq_cst);
    if (slice->fired != 0) {
      slice->in_run = 0;
      return Inline::kHandBack;
    }
    auto t0 = Clock::now();
    long r = ioctl(fd_, g_kvm_run.load(std::memory_order_relaxed), 0);
    long result = r < 0 ? -errno : r;
    std::atomic_signal_fence(std::memory_order_seq_cst);
    slice->in_run = 0;
    Note(Clock::now() - t0, result);
    if (result == -EINTR && !kicked) {
      short_runs_.store(0, std::memory_order_relaxed);
      return Inline::kHandBack;
    }
    result_ = result;
    dispatcher_->Post(this);
    return Inline::kExit;
  }

  long result_ = 0;

 private:
  Napi::AsyncContext& context() {
    if (!ctx_) ctx_ = std::make_unique<Napi::AsyncContext>(Env(), "tsvmm-vcpu");
    return *ctx_;
  }

  void Note(Clock::duration took, long result) {
    if (result >= 0 && took < std::chrono::microseconds(kShortRunMicros)) {
      int n = short_runs_.load(std::memory_order_relaxed);
      if (n < kInlineAfterShortRuns) short_runs_.store(n + 1, std::memory_order_relaxed);
    } else {
      short_runs_.store(0, std::memory_order_relaxed);
    }
  }

  void Loop() {
    // Named so a person (top -H) or a test (/proc/self/task/*/comm) can tell vCPU threads apart.
    pthread_setname_np(pthread_self(), "tsvmm-vcpu");
    for (;;) {
      // The go-ahead usually follows within microseconds of the exit being posted: poll briefly
      // before sleeping.
      auto until = Clock::now() + std::chrono::microseconds(g_runner_spin);
      while (!poke_.load(std::memory_order_acquire) && Clock::now() < until) CpuRelax();
      {
        std::unique_lock<std::mutex> lock(mu_);
        if (!go_ && !quit_) {
          sleeping_.store(true, std::memory_order_release);
          cv_.wait(lock, [this] { return go_ || quit_; });
          sleeping_.store(false, std::memory_order_relaxed);
        }
        poke_.store(false, std::memory_order_relaxed);
        if (quit_) return;
        go_ = false;
        running_ = true;
      }
      auto t0 = Clock::now();
      long r = ioctl(fd_, g_kvm_run.load(std::memory_order_relaxed), 0);
      long result = r < 0 ? -errno : r;
      Note(Clock::now() - t0, result);
      {
        std::lock_guard<std::mutex> lock(mu_);
        running_ = false;
        if (quit_) return;
        result_ = result;
      }
      dispatcher_->Post(this);
    }
  }

  // run(): false if a run is already in flight or the runner is closed.
  Napi::Value Run(const Napi::CallbackInfo& info) {
    if (quit_ || inflight_) return Napi::Boolean::New(info.Env(), false);
    inflight_ = true;
    dispatcher_->Active(+1);
    Go();
    return Napi::Boolean::New(info.Env(), true);
  }

  // Only ever called on the JavaScript thread, so never while that thread is inside an inline
  // KVM_RUN of this vCPU: the runner thread is the one to signal (immediate_exit does the rest).
  Napi::Value Kick(const Napi::CallbackInfo& info) {
    std::lock_guard<std::mutex> lock(mu_);
    if (!started_ || quit_) return Napi::Number::New(info.Env(), -ESRCH);
    return Napi::Number::New(info.Env(), -pthread_kill(tid_, g_kick_signal));
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    Stop();
    return info.Env().Undefined();
  }

 public:
  // JavaScript thread (close(), the finalizer, or environment teardown).
  void Stop() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (quit_) return;
      quit_ = true;
      poke_.store(true, std::memory_order_release);
    }
    cv_.notify_all();
    // The caller set kvm_run.immediate_exit, so a kick that lands before KVM_RUN enters the guest
    // still makes it return. Repeat until the thread is out, in case the first signal was early.
    for (;;) {
      bool running;
      {
        std::lock_guard<std::mutex> lock(mu_);
        running = running_;
        if (running) pthread_kill(tid_, g_kick_signal);
      }
      if (!running) break;
      usleep(100);
    }
    thread_.join();
    if (dispatcher_ != nullptr) {
      dispatcher_->Forget(this);
      if (inflight_) dispatcher_->Active(-1);
    }
    inflight_ = false;
    callback_.Reset();
    run_ref_.Reset();
    ctx_.reset();
  }

 private:
  int fd_ = -1;
  Napi::FunctionReference callback_;
  Napi::ObjectReference run_ref_;  // keeps the kvm_run view alive while immediate_exit_ points into it
  volatile uint8_t* immediate_exit_ = nullptr;
  std::unique_ptr<Napi::AsyncContext> ctx_;
  Dispatcher* dispatcher_ = nullptr;
  std::thread thread_;
  std::mutex mu_;
  std::condition_variable cv_;
  pthread_t tid_{};
  bool started_ = false;
  bool go_ = false;
  bool running_ = false;
  bool inflight_ = false;  // JavaScript thread only
  bool quit_ = false;
  std::atomic<bool> poke_{false};
  std::atomic<bool> sleeping_{false};
  std::atomic<int> short_runs_{0};
};

Dispatcher* Dispatcher::For(napi_env env) {
  // One environment lives on one thread; the map is per thread so workers need no locking.
  thread_local std::unordered_map<napi_env, Dispatcher*> dispatchers;
  auto it = dispatchers.find(env);
  if (it != dispatchers.end()) return it->second;
  auto* d = new Dispatcher(env);  // freed by Teardown (the environment's cleanup hook)
  dispatchers[env] = d;
  d->forget_ = [env] { dispatchers.erase(env); };
  return d;
}

bool Dispatcher::ArmSliceTimer(Clock::time_point slice_end) {
  if (timer_failed_) return false;
  if (!has_timer_) {
    if (slice_ == nullptr) slice_ = new SliceTimer();
    struct sigevent ev;
    memset(&ev, 0, sizeof ev);
    ev.sigev_notify = SIGEV_THREAD_ID;
    ev.sigev_signo = g_kick_signal;
    ev.sigev_value.sival_ptr = slice_;
    ev._sigev_un._tid = tid_;
    if (timer_create(CLOCK_MONOTONIC, &ev, &slice_->timer) != 0) {
      timer_failed_ = true;  // then no vCPU runs on this thread: nothing could bound its KVM_RUN
      return false;
    }
    has_timer_ = true;
  }
  slice_->fired = 0;
  auto left = std::chrono::duration_cast<std::chrono::nanoseconds>(slice_end - Clock::now()).count();
  if (left < 1000) left = 1000;
  struct itimerspec it;
  it.it_value.tv_sec = left / 1000000000;
  it.it_value.tv_nsec = left % 1000000000;
  it.it_interval.tv_sec = 0;
  it.it_interval.tv_nsec = 100000;
  return timer_settime(slice_->timer, 0, &it, nullptr) == 0;
}

void Dispatcher::DisarmSliceTimer() {
  struct itimerspec it;
  memset(&it, 0, sizeof it);
  timer_settime(slice_->timer, 0, &it, nullptr);
}

void Dispatcher::Drain() {
  if (draining_ || abandoned_) return;  // a callback re-entered the loop: the outer drain goes on
  draining_ = true;
  Napi::Env env(env_);
  auto start = Clock::now();
  auto slice_end = start + std::chrono::microseconds(g_slice);
  bool armed = false;
  bool parked = false;
  // Preferences hold for one slice: a vCPU that exited in none of it (halted in the kernel, say)
  // must not keep the inline role from one that is exiting.
  bool sticky_seen = false;
  bool deferred = false;  // the inline KVM_RUN waited once for exits posted meanwhile
  other_ = nullptr;
  hot_.store(true, std::memory_order_seq_cst);
  for (;;) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      batch_.swap(ready_);
      port_batch_.swap(port_ready_);
      count_.store(0, std::memory_order_relaxed);
    }
    // Forwarded exits of vCPU workers first: each has a worker thread waiting for its answer.
    for (size_t i = 0; i < port_batch_.size() && !abandoned_; i++) {
      if (port_batch_[i] != nullptr) port_batch_[i]->Deliver(env);
    }
    port_batch_.clear();
    // Each exit to JavaScript in the order posted. A run that goes on re-enters KVM_RUN on its
    // runner thread at once, except one vCPU that exits back to back: this thread runs that one
    // itself (it would only wait for its next exit otherwise), so two vCPUs keep two cores busy
    // with two threads instead of three.
    for (size_t i = 0; i < batch_.size(); i++) {
      Runner* r = batch_[i];
      if (r == nullptr || abandoned_) continue;
      if (r == sticky_) sticky_seen = true;
      bool more = r->Deliver(env);
      if (batch_[i] == nullptr || abandoned_) continue;  // closed by a callback meanwhile
      if (!more || !r->Inlinable()) {
        if (sticky_ == r) sticky_ = nullptr;
        if (other_ == r) other_ = nullptr;
        if (more) r->Go();
        continue;
      }
      if (inline_ == nullptr && (sticky_ == nullptr || sticky_ == r)) {
        if (sticky_ != r) inline_slices_ = 0;
        inline_ = r;
        sticky_ = r;
      } else {
        other_ = r;
        r->Go();
      }
    }
    batch_.clear();
    if (abandoned_) break;
    auto now = Clock::now();
    if (inline_ != nullptr) {
      Runner* r = inline_;
      if (now >= slice_end) {
        if (g_rotate > 0 && ++inline_slices_ >= g_rotate && other_ != nullptr && other_ != r) {
          // Another vCPU exited back to back on its runner this slice: it is the inline one next
          // slice. A vCPU on its runner waits for this thread to finish the inline KVM_RUN before
          // its exit is handled, so a fixed inline vCPU ran ahead: two vCPUs of 100k exits each
          // ended 90-375 ms apart in 1.2 s, and the aggregate fell to one vCPU's rate for the rest.
          // Every g_rotate slices, not every slice: a trade costs a runner wake-up (~8% of the
          // throughput when made each slice).
          sticky_ = other_;
          sticky_seen = true;
          other_ = nullptr;
          inline_slices_ = 0;
          inline_ = nullptr;
          r->Go();
          break;
        }
        // Left for the next turn of the loop, which comes at once: waking the runner thread and
        // then this one would cost more here than the turn.
        parked = true;
        break;
      }
      // An exit posted while this thread delivered the last batch goes to JavaScript before the
      // inline KVM_RUN, not after it: its vCPU would otherwise wait a whole inline KVM_RUN for its
      // handler and take one exit to the inline vCPU's two. Timed on two vCPUs exiting back to
      // back, a third of the inline KVM_RUNs began with the other vCPU's exit already posted (its
      // KVM_RUN had ended within 2 µs of the inline one). Once per inline KVM_RUN: with many vCPUs
      // whose exits come faster than their handlers run, there would always be one more.
      if (g_pending_first && !deferred && count_.load(std::memory_order_acquire) != 0) {
        deferred = true;
        continue;
      }
      deferred = false;
      inline_ = nullptr;
      // The timer is for a KVM_RUN that does not come back by itself: it fires a while after the
      // slice, which otherwise ends between two exits.
      if (!armed && !(armed = ArmSliceTimer(slice_end + std::chrono::microseconds(kLongRunMicros)))) {
        r->Go();
        break;
      }
      Runner::Inline how = r->RunHere();
      if (how == Runner::Inline::kHandBack) r->Go();
      if (how == Runner::Inline::kExit) continue;
      now = Clock::now();
    }
    if (now >= slice_end) break;
    auto spin_end = std::min(slice_end, now + std::chrono::microseconds(g_drain_spin));
    while (count_.load(std::memory_order_acquire) == 0 && Clock::now() < spin_end) CpuRelax();
    if (count_.load(std::memory_order_acquire) == 0) break;
  }
  if (armed) DisarmSliceTimer();
  if (!sticky_seen && sticky_ != inline_) sticky_ = nullptr;
  hot_.store(false, std::memory_order_seq_cst);
  // Exits posted while we were leaving, or left for the next turn of the loop.
  if (!abandoned_ && (parked || count_.load(std::memory_order_seq_cst) != 0)) uv_async_send(&async_);
  draining_ = false;
}

void Dispatcher::Teardown() {
  if (forget_) forget_();
  auto ports = std::move(ports_);
  for (auto& [p, detach] : ports) detach();
  std::vector<Runner*> all(runners_.begin(), runners_.end());
  for (Runner* r : all) r->Stop();
  if (has_timer_) timer_delete(slice_->timer);  // slice_ itself stays (SliceTimer)
  uv_close(reinterpret_cast<uv_handle_t*>(&async_), [](uv_handle_t* h) { delete static_cast<Dispatcher*>(h->data); });
}

// ---- forwarded exits of vCPU workers -----------------------------------------------------------
// A VcpuWorker's thread hands an exit its module does not take to the owner's thread. Through a
// MessagePort that cost ~75 µs an exit here (the owner's loop woken from epoll, a message event,
// the worker woken from a futex); through the owner's Dispatcher it is posted like a runner's exit:
// a JavaScript thread already draining takes it without a wake-up, and the worker polls for the
// answer briefly before it sleeps (spinWhile below).

class ForwardPort;
std::mutex g_ports_mu;
std::unordered_map<int32_t, ForwardPort*> g_ports;
int32_t g_next_port = 1;

class ForwardPort : public Napi::ObjectWrap<ForwardPort>, public Postable {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "ForwardPort", {InstanceMethod("id", &ForwardPort::Id), InstanceMethod("close", &ForwardPort::Close)});
  }

  explicit ForwardPort(const Napi::CallbackInfo& info) : Napi::ObjectWrap<ForwardPort>(info) {
    callback_ = Napi::Persistent(info[0].As<Napi::Function>());
    dispatcher_ = Dispatcher::For(info.Env());
    // The environment going: no worker reaches the port any more, and the Dispatcher is freed
    // before this object's finalizer may run, so the port forgets it too.
    dispatcher_->RegisterPort(this, [this] {
      Detach();
      dispatcher_ = nullptr;
    });
    std::lock_guard<std::mutex> lock(g_ports_mu);
    id_ = g_next_port++;
    g_ports[id_] = this;
  }

  ~ForwardPort() override { Shut(); }

  // Any thread: the worker has a forwarded exit ready. Coalesced until delivered.
  static int32_t PostTo(int32_t id) {
    std::lock_guard<std::mutex> lock(g_ports_mu);
    auto it = g_ports.find(id);
    if (it == g_ports.end()) return -ESRCH;
    ForwardPort* p = it->second;
    if (!p->queued_.exchange(true, std::memory_order_acq_rel)) p->dispatcher_->PostPort(p);
    return 0;
  }

  void Deliver(Napi::Env env) override {
    queued_.store(false, std::memory_order_release);
    if (callback_.IsEmpty()) return;
    Napi::HandleScope scope(env);
    Ref();  // the callback may close this port
    {
      Napi::CallbackScope cb(env, context());
      napi_value ret = nullptr;
      // The C call, for the reason Runner::Deliver gives.
      if (napi_call_function(env, Value(), callback_.Value(), 0, nullptr, &ret) != napi_ok && !ReportThrown(env) && dispatcher_ != nullptr) dispatcher_->Abandon();
    }
    Unref();
  }

 private:
  Napi::AsyncContext& context() {
    if (!ctx_) ctx_ = std::make_unique<Napi::AsyncContext>(Env(), "tsvmm-vcpu-forward");
    return *ctx_;
  }

  // No worker reaches this port any more (closed, or its environment is going).
  void Detach() {
    std::lock_guard<std::mutex> lock(g_ports_mu);
    g_ports.erase(id_);
  }

  void Shut() {
    Detach();
    if (dispatcher_ == nullptr) return;
    dispatcher_->ForgetPort(this);
    dispatcher_ = nullptr;
    callback_.Reset();
    ctx_.reset();
  }

  Napi::Value Id(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), id_); }
  Napi::Value Close(const Napi::CallbackInfo& info) {
    Shut();
    return info.Env().Undefined();
  }

  Napi::FunctionReference callback_;
  std::unique_ptr<Napi::AsyncContext> ctx_;
  Dispatcher* dispatcher_ = nullptr;
  int32_t id_ = 0;
  std::atomic<bool> queued_{false};
};

// postForward(id): from a worker's thread, post to the owner's ForwardPort `id`: 0 or -ESRCH (closed).
Napi::Value PostForward(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), ForwardPort::PostTo(info[0].As<Napi::Number>().Int32Value()));
}

// spinWhile(int32Array, index, value, micros): polls int32Array[index] (yielding the CPU between
// looks) while it holds `value`, for up to `micros`; returns what it holds then. The caller
// sleeps with Atomics.wait afterwards if it must: an answer that comes within microseconds is
// taken without a futex sleep and wake-up.
Napi::Value SpinWhile(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsTypedArray()) return Napi::Number::New(env, -EINVAL);
  uint32_t index = info[1].As<Napi::Number>().Uint32Value();
  int32_t value = info[2].As<Napi::Number>().Int32Value();
  int64_t micros = info[3].As<Napi::Number>().Int64Value();
  // napi_get_typedarray_info's own data pointer: a view of a SharedArrayBuffer has no ArrayBuffer
  // for Napi::TypedArray::ArrayBuffer() to give.
  napi_typedarray_type type;
  size_t length = 0;
  void* data = nullptr;
  if (napi_get_typedarray_info(env, info[0], &type, &length, &data, nullptr, nullptr) != napi_ok || type != napi_int32_array || index >= length || data == nullptr) {
    return Napi::Number::New(env, -EINVAL);
  }
  auto* word = static_cast<int32_t*>(data) + index;
  auto until = Clock::now() + std::chrono::microseconds(micros);
  int32_t now;
  while ((now = __atomic_load_n(word, __ATOMIC_ACQUIRE)) == value && Clock::now() < until) CpuRelax();
  return Napi::Number::New(env, now);
}

// KVM_RUN on the calling thread (Vcpu.run() and a VcpuWorker's loop): the generic ioctl() through
// node-addon-api's wrappers (its CallbackInfo, three arguments read, a double made for the result)
// was ~0.1 µs of a ~10 µs synchronous exit (perf); this reads one int and makes one Smi.
napi_value RunHere(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value arg = nullptr;
  int32_t fd = -1;
  if (napi_get_cb_info(env, info, &argc, &arg, nullptr, nullptr) != napi_ok || argc < 1 || napi_get_value_int32(env, arg, &fd) != napi_ok) fd = -1;
  long r = ioctl(fd, g_kvm_run.load(std::memory_order_relaxed), 0);
  napi_value out = nullptr;
  napi_create_int32(env, static_cast<int32_t>(r < 0 ? -errno : r), &out);
  return out;
}

Napi::Value SetRunRequest(const Napi::CallbackInfo& info) {
  g_kvm_run.store(static_cast<unsigned long>(info[0].As<Napi::Number>().Uint32Value()), std::memory_order_relaxed);
  return info.Env().Undefined();
}


// ---- a vCPU run by a worker thread -------------------------------------------------------------
// A worker issues its vCPU's KVM_RUN synchronously on its own thread (VcpuWorker): the thread that
// kicks it needs that thread's id, and a signal to it alone.

// threadId(): gettid() of the calling thread.
Napi::Value ThreadId(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(syscall(SYS_gettid)));
}

// nameThread(name): the calling thread's name as ps/top show it (15 bytes at most): 0 or -errno.
Napi::Value NameThread(const Napi::CallbackInfo& info) {
  std::string name = info[0].As<Napi::String>().Utf8Value();
  if (name.size() > 15) name.resize(15);
  return Napi::Number::New(info.Env(), -pthread_setname_np(pthread_self(), name.c_str()));
}

// signalThread(tid): the kick signal to thread `tid` of this process (tgkill, so a tid reused by
// another process is never hit): 0 or -errno. The handler does nothing for a kick but end KVM_RUN.
Napi::Value SignalThread(const Napi::CallbackInfo& info) {
  pid_t tid = static_cast<pid_t>(info[0].As<Napi::Number>().Int32Value());
  if (tid <= 0) return Napi::Number::New(info.Env(), -EINVAL);
  long r = syscall(SYS_tgkill, getpid(), tid, g_kick_signal);
  return Napi::Number::New(info.Env(), r < 0 ? -errno : 0);
}

// tick(micros): every `micros` from now on, the kick signal to the calling thread (0: no more), so a
// KVM_RUN there returns EINTR at least that often even while its guest spins without exits. A
// vCPU worker's loop arms it: Node ends a worker (terminate(), or process.exit() in its parent,
// which waits for it) by stopping its JavaScript, and a thread inside KVM_RUN runs none until
// KVM_RUN returns. The handler does nothing for it (no si_value), and the loop re-enters. 0 or -errno.
struct TickTimer {
  timer_t timer{};
  bool made = false;
  ~TickTimer() {
    if (made) timer_delete(timer);
  }
};
thread_local TickTimer t_tick;

Napi::Value Tick(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int64_t us = info[0].As<Napi::Number>().Int64Value();
  if (us < 0) return Napi::Number::New(env, -EINVAL);
  if (!t_tick.made) {
    if (us == 0) return Napi::Number::New(env, 0);
    struct sigevent ev;
    memset(&ev, 0, sizeof ev);
    ev.sigev_notify = SIGEV_THREAD_ID;
    ev.sigev_signo = g_kick_signal;
    ev.sigev_value.sival_ptr = nullptr;
    ev._sigev_un._tid = static_cast<pid_t>(syscall(SYS_gettid));
    if (timer_create(CLOCK_MONOTONIC, &ev, &t_tick.timer) != 0) return Napi::Number::New(env, -errno);
    t_tick.made = true;
  }
  struct itimerspec it;
  it.it_value.tv_sec = it.it_interval.tv_sec = us / 1000000;
  it.it_value.tv_nsec = it.it_interval.tv_nsec = (us % 1000000) * 1000;
  return Ret(env, timer_settime(t_tick.timer, 0, &it, nullptr));
}

// ---- fd readiness ------------------------------------------------------------------------------
// A uv_poll on the JavaScript thread's loop: the callback runs there when the fd is readable (an
// ioeventfd signalled by a guest doorbell, a TAP device with a frame). No read is done here.

struct FdWatch {
  uv_poll_t poll;
  Napi::FunctionReference callback;
  napi_env env;
};

void OnFdReadable(uv_poll_t* handle, int status, int /*events*/) {
  auto* w = static_cast<FdWatch*>(handle->data);
  Napi::Env env(w->env);
  Napi::HandleScope scope(env);
  // The C call, for the reason Runner::Deliver gives: a worker being terminated must not abort
  // the process from here.
  napi_value arg = Napi::Number::New(env, status);
  napi_value ret = nullptr;
  if (napi_make_callback(env, nullptr, env.Global(), w->callback.Value(), 1, &arg, &ret) != napi_ok) ReportThrown(env);
}

// watchFd(fd, callback(status)) -> External handle, or -errno.
Napi::Value WatchFd(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = info[0].As<Napi::Number>().Int32Value();
  uv_loop_t* loop = nullptr;
  if (napi_get_uv_event_loop(env, &loop) != napi_ok || loop == nullptr) return Napi::Number::New(env, -EINVAL);
  auto* w = new FdWatch();
  w->env = env;
  int r = uv_poll_init(loop, &w->poll, fd);
  if (r != 0) {
    delete w;
    return Napi::Number::New(env, r);  // libuv errors are -errno on Linux
  }
  w->poll.data = w;
  w->callback = Napi::Persistent(info[1].As<Napi::Function>());
  r = uv_poll_start(&w->poll, UV_READABLE, OnFdReadable);
  if (r != 0) {
    w->callback.Reset();
    uv_close(reinterpret_cast<uv_handle_t*>(&w->poll), [](uv_handle_t* h) { delete static_cast<FdWatch*>(h->data); });
    return Napi::Number::New(env, r);
  }
  return Napi::External<FdWatch>::New(env, w);
}

// unwatchFd(handle): stops and frees the watch (idempotent per handle from JS's side).
Napi::Value UnwatchFd(const Napi::CallbackInfo& info) {
  auto* w = info[0].As<Napi::External<FdWatch>>().Data();
  uv_poll_stop(&w->poll);
  w->callback.Reset();
  uv_close(reinterpret_cast<uv_handle_t*>(&w->poll), [](uv_handle_t* h) { delete static_cast<FdWatch*>(h->data); });
  return info.Env().Undefined();
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  static std::once_flag once;
  std::call_once(once, InstallKickSignal);
  exports.Set("open", Napi::Function::New(env, Open));
  exports.Set("close", Napi::Function::New(env, Close));
  exports.Set("ioctl", Napi::Function::New(env, Ioctl));
  {
    napi_value fn = nullptr;
    if (napi_create_function(env, "runHere", NAPI_AUTO_LENGTH, RunHere, nullptr, &fn) == napi_ok) exports.Set("runHere", Napi::Value(env, fn));
  }
  exports.Set("ioctlBuf", Napi::Function::New(env, IoctlBuf));
  exports.Set("address", Napi::Function::New(env, Address));
  exports.Set("shareMapping", Napi::Function::New(env, ShareMapping));
  exports.Set("trackFd", Napi::Function::New(env, TrackFdJs));
  exports.Set("compareExchange", Napi::Function::New(env, CompareExchange));
  exports.Set("eventfd", Napi::Function::New(env, EventFd));
  exports.Set("read", Napi::Function::New(env, Read));
  exports.Set("write", Napi::Function::New(env, Write));
  exports.Set("preadv2", Napi::Function::New(env, Preadv2));
  exports.Set("mmap", Napi::Function::New(env, Mmap));
  exports.Set("munmap", Napi::Function::New(env, Munmap));
  exports.Set("setRunRequest", Napi::Function::New(env, SetRunRequest));
  exports.Set("threadId", Napi::Function::New(env, ThreadId));
  exports.Set("nameThread", Napi::Function::New(env, NameThread));
  exports.Set("signalThread", Napi::Function::New(env, SignalThread));
  exports.Set("openTap", Napi::Function::New(env, OpenTap));
  exports.Set("tapGetIff", Napi::Function::New(env, TapGetIff));
  exports.Set("tapSetVnetHdrSize", Napi::Function::New(env, TapSetVnetHdrSize));
  exports.Set("tapGetVnetHdrSize", Napi::Function::New(env, TapGetVnetHdrSize));
  exports.Set("tapSetOffload", Napi::Function::New(env, TapSetOffload));
  exports.Set("watchFd", Napi::Function::New(env, WatchFd));
  exports.Set("unwatchFd", Napi::Function::New(env, UnwatchFd));
  exports.Set("Runner", Runner::Init(env));
  exports.Set("ForwardPort", ForwardPort::Init(env));
  exports.Set("postForward", Napi::Function::New(env, PostForward));
  exports.Set("spinWhile", Napi::Function::New(env, SpinWhile));
  exports.Set("tick", Napi::Function::New(env, Tick));
  Napi::Object c = Napi::Object::New(env);
  c.Set("O_RDWR", static_cast<int>(O_RDWR));
  c.Set("O_NONBLOCK", static_cast<int>(O_NONBLOCK));
  c.Set("PROT_READ", static_cast<int>(PROT_READ));
  c.Set("PROT_WRITE", static_cast<int>(PROT_WRITE));
  c.Set("MAP_SHARED", static_cast<int>(MAP_SHARED));
  c.Set("MAP_PRIVATE", static_cast<int>(MAP_PRIVATE));
  c.Set("MAP_ANONYMOUS", static_cast<int>(MAP_ANONYMOUS));
  c.Set("MAP_NORESERVE", static_cast<int>(MAP_NORESERVE));
  c.Set("EFD_NONBLOCK", static_cast<int>(EFD_NONBLOCK));
  c.Set("EFD_SEMAPHORE", static_cast<int>(EFD_SEMAPHORE));
  c.Set("RWF_NOWAIT", static_cast<int>(RWF_NOWAIT));
  c.Set("SIGRTMIN", static_cast<int>(g_kick_signal));
  exports.Set("constants", c);
  return exports;
}

}  // namespace

NODE_API_MODULE(tsvmm_kvm, Init)
