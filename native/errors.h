// System errors shaped like Node's own (code, errno, syscall), and argument checks that throw instead of crashing.
// C++ exceptions are disabled: every helper throws into JavaScript and returns false; callers return at once.
#pragma once
#include <napi.h>
#include <cstddef>
#include <cstdint>

namespace vxtun {

/** Throws Error("<syscall> failed: <strerror> (<CODE>)") with code, errno (positive) and syscall properties. */
void ThrowSystemError(Napi::Env env, int err, const char* syscall);
void ThrowTypeError(Napi::Env env, const char* message);
void ThrowRangeError(Napi::Env env, const char* message);

/** A non-negative integer that fits an int (fds, counts). */
bool ArgInt(const Napi::CallbackInfo& info, size_t index, const char* name, int32_t& out);
/** An integer in [0, 2^32) (IPv4 addresses, byte counts). */
bool ArgUint32(const Napi::CallbackInfo& info, size_t index, const char* name, uint32_t& out);
bool ArgBool(const Napi::CallbackInfo& info, size_t index, const char* name, bool& out);
bool ArgString(const Napi::CallbackInfo& info, size_t index, const char* name, std::string& out);

struct Bytes {
  uint8_t* data;
  size_t length;
};
/** A Buffer / Uint8Array. */
bool ArgBytes(const Napi::CallbackInfo& info, size_t index, const char* name, Bytes& out);

template <typename T>
struct Array {
  T* data;
  size_t length;
};
bool ArgUint32Array(const Napi::CallbackInfo& info, size_t index, const char* name, Array<uint32_t>& out);
bool ArgUint16Array(const Napi::CallbackInfo& info, size_t index, const char* name, Array<uint16_t>& out);

/**
 * Checks that `count` packets fit every table and that each slot slab[offsets[i], offsets[i] + lengths[i]) lies
 * inside the slab, so no system call can touch memory outside it.
 */
bool CheckSlots(Napi::Env env, const Bytes& slab, const Array<uint32_t>& offsets, const Array<uint32_t>& lengths,
                size_t count);

}  // namespace vxtun
