// Batched TUN I/O shared by tun.cc, offload.cc and uring.cc: a plan of writes (each a gather list standing for one
// or more input packets) and the two ways to carry a batch out: one system call per packet (readv / writev), or
// every packet of the batch in one io_uring_enter (uring.cc; a stub that reports ENOSYS when built without liburing).
#pragma once
#include <sys/uio.h>

#include <cstddef>
#include <cstdint>
#include <vector>

#include <napi.h>

namespace vxtun {

/** No ring: the per-packet system calls. */
static constexpr int kNoRing = -1;

/**
 * The writes of one batch. Each write is iov[firstIov, +iovCount) and carries `members` input packets (several when
 * a coalesced super-packet, one otherwise). Reused from call to call: after warm-up nothing is allocated.
 */
struct WritePlan {
  struct Write {
    uint32_t firstIov;
    uint32_t iovCount;
    uint32_t members;
  };
  std::vector<struct iovec> iov;
  std::vector<Write> writes;

  void Clear() {
    iov.clear();
    writes.clear();
  }
  /** Starts a write of `members` packets; the iovecs added next belong to it. */
  void Begin(uint32_t members) { writes.push_back({static_cast<uint32_t>(iov.size()), 0, members}); }
  void Add(const void* base, size_t len) {
    iov.push_back({const_cast<void*>(base), len});
    writes.back().iovCount++;
  }
};

/** An error that concerns the device or our arguments, not the one packet: stop the batch and report it. */
inline bool IsFatalWriteError(int err) { return err == EBADF || err == EBADFD || err == EFAULT || err == ENOTTY; }

/**
 * Carries out `plan` on `fd`. Returns the input packets accepted (a write the kernel rejects, EINVAL or EIO while
 * the device is down, is skipped; EAGAIN stops the batch), or -1 with *fatalErrno set (IsFatalWriteError).
 */
int WritePlanSyscalls(int fd, const WritePlan& plan, int* fatalErrno);
int WritePlanUring(int ring, int fd, const WritePlan& plan, int* fatalErrno);

/**
 * Reads up to `max` packets into slab[offsets[i], +lengths[i]) with io_uring; the semantics of tunRead (lengths in:
 * capacities; out: packet sizes, above the capacity for a packet that did not fit). Filled slots come first: an
 * offset/length pair may be swapped with a later, unfilled one. Returns the count, or -1 with *err set when nothing
 * was read and the device failed.
 */
int ReadUring(int ring, int fd, uint8_t* slab, uint32_t* offsets, uint32_t* lengths, int max, int* err);

/** Parses an optional ring argument: undefined or -1 is kNoRing, else an open ring's id (TypeError / RangeError). */
bool ArgRing(const Napi::CallbackInfo& info, size_t index, int& ring);

}  // namespace vxtun
