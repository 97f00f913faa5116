// flock(2) for the embedded store's cross-process lock: the kernel drops the lock when its holder dies (its open file
// description closes), and never because of age while the holder lives. Only the non-blocking form: a blocking
// flock would stall Node's event loop, so the caller retries with a short async back-off.
#include <errno.h>
#include <sys/file.h>

#include "errors.h"
#include "exports.h"

namespace vxtun {

// flockTry(fd, exclusive): true when the lock was taken, false when another open file description holds it
// (EWOULDBLOCK); throws a system error otherwise (EBADF, ENOLCK...).
static Napi::Value FlockTry(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int32_t fd;
  bool exclusive;
  if (!ArgInt(info, 0, "fd", fd) || !ArgBool(info, 1, "exclusive", exclusive)) return env.Undefined();
  int rc;
  do {
    rc = flock(fd, (exclusive ? LOCK_EX : LOCK_SH) | LOCK_NB);
  } while (rc < 0 && errno == EINTR);
  if (rc == 0) return Napi::Boolean::New(env, true);
  if (errno == EWOULDBLOCK) return Napi::Boolean::New(env, false);
  ThrowSystemError(env, errno, "flock");
  return env.Undefined();
}

// flockRelease(fd): drops this description's lock (closing the fd does it too).
static Napi::Value FlockRelease(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int32_t fd;
  if (!ArgInt(info, 0, "fd", fd)) return env.Undefined();
  int rc;
  do {
    rc = flock(fd, LOCK_UN);
  } while (rc < 0 && errno == EINTR);
  if (rc < 0) ThrowSystemError(env, errno, "flock");
  return env.Undefined();
}

void InitLock(Napi::Env env, Napi::Object exports) {
  exports.Set("flockTry", Napi::Function::New(env, FlockTry, "flockTry"));
  exports.Set("flockRelease", Napi::Function::New(env, FlockRelease, "flockRelease"));
}

}  // namespace vxtun
