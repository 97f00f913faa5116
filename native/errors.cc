#include "errors.h"

#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>

namespace vxtun {

void ThrowSystemError(Napi::Env env, int err, const char* syscall) {
  const char* code = strerrorname_np(err);  // glibc >= 2.32: "EADDRINUSE"
  std::string codeText = code != nullptr ? code : "E" + std::to_string(err);
  std::string message = std::string(syscall) + " failed: " + strerror(err) + " (" + codeText + ")";
  Napi::Error error = Napi::Error::New(env, message);
  error.Set("code", Napi::String::New(env, codeText));
  error.Set("errno", Napi::Number::New(env, err));
  error.Set("syscall", Napi::String::New(env, syscall));
  error.ThrowAsJavaScriptException();
}

void ThrowTypeError(Napi::Env env, const char* message) {
  Napi::TypeError::New(env, message).ThrowAsJavaScriptException();
}

void ThrowRangeError(Napi::Env env, const char* message) {
  Napi::RangeError::New(env, message).ThrowAsJavaScriptException();
}

static bool Fail(Napi::Env env, const char* name, const char* expected) {
  std::string message = std::string("argument ") + name + " must be " + expected;
  Napi::TypeError::New(env, message).ThrowAsJavaScriptException();
  return false;
}

static bool ArgInteger(const Napi::CallbackInfo& info, size_t index, const char* name, double max, double& out) {
  if (index >= info.Length() || !info[index].IsNumber()) return Fail(info.Env(), name, "a number");
  double value = info[index].As<Napi::Number>().DoubleValue();
  if (!std::isfinite(value) || value != std::floor(value) || value < 0 || value > max) {
    char expected[64];
    snprintf(expected, sizeof expected, "an integer from 0 to %.0f", max);
    return Fail(info.Env(), name, expected);
  }
  out = value;
  return true;
}

bool ArgInt(const Napi::CallbackInfo& info, size_t index, const char* name, int32_t& out) {
  double value;
  if (!ArgInteger(info, index, name, 2147483647.0, value)) return false;
  out = static_cast<int32_t>(value);
  return true;
}

bool ArgUint32(const Napi::CallbackInfo& info, size_t index, const char* name, uint32_t& out) {
  double value;
  if (!ArgInteger(info, index, name, 4294967295.0, value)) return false;
  out = static_cast<uint32_t>(value);
  return true;
}

bool ArgBool(const Napi::CallbackInfo& info, size_t index, const char* name, bool& out) {
  if (index >= info.Length() || !info[index].IsBoolean()) return Fail(info.Env(), name, "a boolean");
  out = info[index].As<Napi::Boolean>().Value();
  return true;
}

bool ArgString(const Napi::CallbackInfo& info, size_t index, const char* name, std::string& out) {
  if (index >= info.Length() || !info[index].IsString()) return Fail(info.Env(), name, "a string");
  out = info[index].As<Napi::String>().Utf8Value();
  return true;
}

bool ArgBytes(const Napi::CallbackInfo& info, size_t index, const char* name, Bytes& out) {
  if (index >= info.Length() || !info[index].IsTypedArray()) return Fail(info.Env(), name, "a Buffer");
  Napi::TypedArray array = info[index].As<Napi::TypedArray>();
  if (array.TypedArrayType() != napi_uint8_array) return Fail(info.Env(), name, "a Buffer");
  Napi::Uint8Array bytes = array.As<Napi::Uint8Array>();
  out.data = bytes.Data();
  out.length = bytes.ElementLength();
  return true;
}

template <typename T, napi_typedarray_type Type>
static bool ArgTyped(const Napi::CallbackInfo& info, size_t index, const char* name, const char* expected,
                     Array<T>& out) {
  if (index >= info.Length() || !info[index].IsTypedArray()) return Fail(info.Env(), name, expected);
  Napi::TypedArray array = info[index].As<Napi::TypedArray>();
  if (array.TypedArrayType() != Type) return Fail(info.Env(), name, expected);
  Napi::TypedArrayOf<T> typed = array.As<Napi::TypedArrayOf<T>>();
  out.data = typed.Data();
  out.length = typed.ElementLength();
  return true;
}

bool ArgUint32Array(const Napi::CallbackInfo& info, size_t index, const char* name, Array<uint32_t>& out) {
  return ArgTyped<uint32_t, napi_uint32_array>(info, index, name, "a Uint32Array", out);
}

bool ArgUint16Array(const Napi::CallbackInfo& info, size_t index, const char* name, Array<uint16_t>& out) {
  return ArgTyped<uint16_t, napi_uint16_array>(info, index, name, "a Uint16Array", out);
}

bool CheckSlots(Napi::Env env, const Bytes& slab, const Array<uint32_t>& offsets, const Array<uint32_t>& lengths,
                size_t count) {
  if (count > offsets.length || count > lengths.length) {
    ThrowRangeError(env, "packet count exceeds the offsets/lengths tables");
    return false;
  }
  for (size_t i = 0; i < count; i++) {
    // 64-bit sum: offset + length cannot wrap.
    if (static_cast<uint64_t>(offsets.data[i]) + lengths.data[i] > slab.length) {
      std::string message = "packet " + std::to_string(i) + " (offset " + std::to_string(offsets.data[i]) +
                            ", length " + std::to_string(lengths.data[i]) + ") lies outside the slab of " +
                            std::to_string(slab.length) + " bytes";
      ThrowRangeError(env, message.c_str());
      return false;
    }
  }
  return true;
}

}  // namespace vxtun
