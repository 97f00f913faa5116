// vxtun's native addon: batched system calls for the data plane. Every call is synchronous and non-blocking.
#include <napi.h>

#include "exports.h"

static Napi::Object Init(Napi::Env env, Napi::Object exports) {
  vxtun::InitTun(env, exports);
  vxtun::InitSocket(env, exports);
  vxtun::InitWatcher(env, exports);
  vxtun::InitOffload(env, exports);
  vxtun::InitLock(env, exports);
  vxtun::InitUring(env, exports);
  return exports;
}

NODE_API_MODULE(vxtun, Init)
