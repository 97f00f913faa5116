// Each file registers its own exports: one concern per file.
#pragma once
#include <napi.h>

namespace vxtun {
void InitTun(Napi::Env env, Napi::Object exports);
void InitSocket(Napi::Env env, Napi::Object exports);
void InitWatcher(Napi::Env env, Napi::Object exports);
void InitOffload(Napi::Env env, Napi::Object exports);
void InitLock(Napi::Env env, Napi::Object exports);
void InitUring(Napi::Env env, Napi::Object exports);
}  // namespace vxtun
