// io_uring for the TUN: a batch of reads or writes in one io_uring_enter instead of one system call per packet (the
// cost that dominates small packets: issue 11). Rings are made by uringOpen and named by a small integer id; each
// serves one TUN fd from the JavaScript thread only (IORING_SETUP_SINGLE_ISSUER). Every submission is waited for
// before the call returns, so the iovecs and slots it names never outlive the call. Every request carries RWF_NOWAIT:
// the kernel runs it inline, in submission order, and an empty queue completes with -EAGAIN. O_NONBLOCK on the fd is
// not enough: for a pollable file (TUN, sockets) the kernel here (6.18) arms a poll and completes the read when a
// packet comes, so the call would wait (measured: a read of an idle TUN hung). Built without liburing (no liburing.h
// at build time) every entry point reports ENOSYS.
#include <errno.h>
#include <unistd.h>

#include <algorithm>
#include <memory>
#include <vector>

#include "errors.h"
#include "exports.h"
#include "tun-io.h"

#ifdef VXTUN_HAVE_LIBURING
#include <liburing.h>
#endif

namespace vxtun {

bool ArgRing(const Napi::CallbackInfo& info, size_t index, int& ring) {
  ring = kNoRing;
  if (index >= info.Length() || info[index].IsUndefined()) return true;
  if (info[index].IsNumber() && info[index].As<Napi::Number>().Int32Value() == -1) return true;
  int32_t id;
  if (!ArgInt(info, index, "ring", id)) return false;
  ring = id;
  return true;
}

#ifdef VXTUN_HAVE_LIBURING

// Reads offered per submission start here and double while every one of them finds a packet, up to the batch; an
// idle device so costs a few failed reads per wake-up, not a whole batch of them.
static constexpr int kMinReadAhead = 2;

struct Ring {
  struct io_uring ring;
  unsigned entries;
  int readAhead = kMinReadAhead;
  std::vector<struct iovec> readIov;  // two per read: the slot, then the spare byte (see tunRead in tun.cc)
  std::vector<int32_t> results;
  uint8_t spill = 0;
};

static std::vector<std::unique_ptr<Ring>> rings;

static Ring* Find(int id) {
  if (id < 0 || static_cast<size_t>(id) >= rings.size()) return nullptr;
  return rings[id].get();
}

// Submits what is queued and waits for `n` completions, retrying EINTR; returns 0 or a negative errno.
static int SubmitAndWait(Ring* r, unsigned n) {
  for (;;) {
    int status = io_uring_submit_and_wait(&r->ring, n);
    if (status >= 0) return 0;
    if (status != -EINTR) return status;
  }
}

// Takes the completions of the last submission into results[user_data]; returns how many were reaped.
static unsigned Reap(Ring* r) {
  struct io_uring_cqe* cqe;
  unsigned head, seen = 0;
  io_uring_for_each_cqe(&r->ring, head, cqe) {
    uint64_t index = cqe->user_data;
    if (index < r->results.size()) r->results[index] = cqe->res;
    seen++;
  }
  io_uring_cq_advance(&r->ring, seen);
  return seen;
}

int WritePlanUring(int id, int fd, const WritePlan& plan, int* fatalErrno) {
  Ring* r = Find(id);
  if (r == nullptr) {
    *fatalErrno = EBADF;
    return -1;
  }
  size_t total = plan.writes.size();
  if (r->results.size() < r->entries) r->results.resize(r->entries);
  int accepted = 0;
  size_t done = 0;
  while (done < total) {
    unsigned n = 0;
    while (done + n < total && n < r->entries) {
      struct io_uring_sqe* sqe = io_uring_get_sqe(&r->ring);
      if (sqe == nullptr) break;
      const WritePlan::Write& w = plan.writes[done + n];
      io_uring_prep_writev(sqe, fd, &plan.iov[w.firstIov], w.iovCount, static_cast<uint64_t>(-1));
      sqe->rw_flags = RWF_NOWAIT;
      sqe->user_data = n;
      r->results[n] = -EAGAIN;
      n++;
    }
    if (n == 0) {  // no free submission slot: cannot happen while every call waits for all it submitted
      *fatalErrno = EBUSY;
      return -1;
    }
    int status = SubmitAndWait(r, n);
    Reap(r);
    if (status < 0) {
      *fatalErrno = -status;
      return -1;
    }
    bool stop = false;
    for (unsigned k = 0; k < n; k++) {
      int res = r->results[k];
      if (res >= 0) {
        accepted += static_cast<int>(plan.writes[done + k].members);
      } else if (IsFatalWriteError(-res)) {
        *fatalErrno = -res;
        return -1;
      } else if (res == -EAGAIN) {
        stop = true;  // as the system-call path: a full device takes nothing more in this batch
      }
    }
    done += n;
    if (stop) break;
  }
  return accepted;
}

int ReadUring(int id, int fd, uint8_t* slab, uint32_t* offsets, uint32_t* lengths, int max, int* err) {
  Ring* r = Find(id);
  if (r == nullptr) {
    *err = EBADF;
    return -1;
  }
  if (r->readIov.size() < 2 * r->entries) r->readIov.resize(2 * r->entries);
  if (r->results.size() < r->entries) r->results.resize(r->entries);
  int count = 0;
  int firstError = 0;
  int want = std::min({max, r->readAhead, static_cast<int>(r->entries)});
  while (count < max && want > 0) {
    int n = 0;
    for (; n < want; n++) {
      struct io_uring_sqe* sqe = io_uring_get_sqe(&r->ring);
      if (sqe == nullptr) break;
      struct iovec* iov = &r->readIov[2 * n];
      iov[0].iov_base = slab + offsets[count + n];
      iov[0].iov_len = lengths[count + n];
      iov[1].iov_base = &r->spill;
      iov[1].iov_len = 1;
      io_uring_prep_readv(sqe, fd, iov, 2, static_cast<uint64_t>(-1));
      sqe->rw_flags = RWF_NOWAIT;
      sqe->user_data = n;
      r->results[n] = -EAGAIN;
    }
    int status = SubmitAndWait(r, n);
    Reap(r);
    if (status < 0) {
      if (count == 0) {
        *err = -status;
        return -1;
      }
      break;
    }
    // Filled slots move to the front, in submission order (the kernel ran them in that order).
    int filled = 0;
    for (int k = 0; k < n; k++) {
      int res = r->results[k];
      if (res < 0) {
        if (res != -EAGAIN && res != -EINTR && firstError == 0) firstError = -res;
        continue;
      }
      int to = count + filled, from = count + k;
      if (to != from) {
        std::swap(offsets[to], offsets[from]);
        std::swap(lengths[to], lengths[from]);
      }
      lengths[to] = static_cast<uint32_t>(res);
      filled++;
    }
    count += filled;
    if (filled < n || firstError != 0) break;  // the queue ran dry (or failed): what we have is all there is
    want = std::min({max - count, 2 * n, static_cast<int>(r->entries)});
  }
  r->readAhead = std::max(kMinReadAhead, std::min(max, 2 * count));
  if (count == 0 && firstError != 0) {
    *err = firstError;
    return -1;
  }
  return count;
}

// uringOpen(entries) -> ring id. A system error when the kernel refuses (ENOSYS, EPERM: io_uring_disabled...).
static Napi::Value UringOpen(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int32_t entries;
  if (!ArgInt(info, 0, "entries", entries)) return env.Undefined();
  if (entries < 1 || entries > 4096) {
    ThrowRangeError(env, "entries must be 1 to 4096");
    return env.Undefined();
  }
  auto r = std::make_unique<Ring>();
  // Single issuer + cooperative task running: the cheapest setup for one thread that always waits for its own work
  // (kernel 6.0+); older kernels refuse the flags with EINVAL, so retry without them.
  unsigned flags = IORING_SETUP_SUBMIT_ALL | IORING_SETUP_COOP_TASKRUN | IORING_SETUP_SINGLE_ISSUER;
  int status = io_uring_queue_init(static_cast<unsigned>(entries), &r->ring, flags);
  if (status == -EINVAL) status = io_uring_queue_init(static_cast<unsigned>(entries), &r->ring, 0);
  if (status < 0) {
    ThrowSystemError(env, -status, "io_uring_setup");
    return env.Undefined();
  }
  r->entries = r->ring.sq.ring_entries;
  for (size_t i = 0; i < rings.size(); i++) {
    if (rings[i] == nullptr) {
      rings[i] = std::move(r);
      return Napi::Number::New(env, static_cast<double>(i));
    }
  }
  rings.push_back(std::move(r));
  return Napi::Number::New(env, static_cast<double>(rings.size() - 1));
}

// uringClose(id): frees the ring; closing one already closed does nothing.
static Napi::Value UringClose(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int32_t id;
  if (!ArgInt(info, 0, "ring", id)) return env.Undefined();
  Ring* r = Find(id);
  if (r != nullptr) {
    io_uring_queue_exit(&r->ring);
    rings[id].reset();
  }
  return env.Undefined();
}

#else  // no liburing at build time

int WritePlanUring(int, int, const WritePlan&, int* fatalErrno) {
  *fatalErrno = ENOSYS;
  return -1;
}

int ReadUring(int, int, uint8_t*, uint32_t*, uint32_t*, int, int* err) {
  *err = ENOSYS;
  return -1;
}

static Napi::Value UringOpen(const Napi::CallbackInfo& info) {
  ThrowSystemError(info.Env(), ENOSYS, "io_uring_setup (vxtun was built without liburing)");
  return info.Env().Undefined();
}

static Napi::Value UringClose(const Napi::CallbackInfo& info) { return info.Env().Undefined(); }

#endif

void InitUring(Napi::Env env, Napi::Object exports) {
  exports.Set("uringOpen", Napi::Function::New(env, UringOpen, "uringOpen"));
  exports.Set("uringClose", Napi::Function::New(env, UringClose, "uringClose"));
#ifdef VXTUN_HAVE_LIBURING
  exports.Set("uringAvailable", Napi::Boolean::New(env, true));
#else
  exports.Set("uringAvailable", Napi::Boolean::New(env, false));
#endif
}

}  // namespace vxtun
