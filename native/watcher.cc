// FdWatcher: calls a JavaScript function from the event loop while an fd is readable (uv_poll_t, level-triggered).
// Lifetime: the uv handle is heap-allocated and freed in its close callback, since libuv may still touch it after
// the JavaScript object is gone. A started watcher holds a strong reference to itself so it is not collected
// while it can still fire; stop()/close() drop it.
#include <uv.h>

#include "errors.h"
#include "exports.h"

namespace vxtun {

class FdWatcher : public Napi::ObjectWrap<FdWatcher> {
 public:
  static void Init(Napi::Env env, Napi::Object exports) {
    Napi::Function constructor = DefineClass(env, "FdWatcher",
                                             {
                                                 InstanceMethod<&FdWatcher::Start>("start"),
                                                 InstanceMethod<&FdWatcher::Stop>("stop"),
                                                 InstanceMethod<&FdWatcher::Close>("close"),
                                                 InstanceMethod<&FdWatcher::Ref>("ref"),
                                                 InstanceMethod<&FdWatcher::Unref>("unref"),
                                             });
    exports.Set("FdWatcher", constructor);
  }

  FdWatcher(const Napi::CallbackInfo& info) : Napi::ObjectWrap<FdWatcher>(info) {
    Napi::Env env = info.Env();
    int32_t fd;
    if (!ArgInt(info, 0, "fd", fd)) return;
    if (info.Length() < 2 || !info[1].IsFunction()) {
      ThrowTypeError(env, "argument onReadable must be a function");
      return;
    }
    uv_loop_t* loop = nullptr;
    if (napi_get_uv_event_loop(env, &loop) != napi_ok || loop == nullptr) {
      Napi::Error::New(env, "FdWatcher: no event loop").ThrowAsJavaScriptException();
      return;
    }
    uv_poll_t* handle = new uv_poll_t;
    int status = uv_poll_init(loop, handle, fd);
    if (status != 0) {
      delete handle;  // never registered with the loop
      ThrowSystemError(env, -status, "uv_poll_init");
      return;
    }
    handle->data = this;
    handle_ = handle;
    callback_ = Napi::Persistent(info[1].As<Napi::Function>());
    context_ = std::make_unique<Napi::AsyncContext>(env, "vxtun.FdWatcher");
  }

  ~FdWatcher() override { CloseHandle(); }

 private:
  Napi::Value Start(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (handle_ == nullptr) {
      Napi::Error::New(env, "FdWatcher is closed").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    int status = uv_poll_start(handle_, UV_READABLE, OnPoll);
    if (status != 0) {
      ThrowSystemError(env, -status, "uv_poll_start");
      return env.Undefined();
    }
    if (!started_) {
      started_ = true;
      Napi::ObjectWrap<FdWatcher>::Ref();  // keep this object alive while it can fire
    }
    return env.Undefined();
  }

  Napi::Value Stop(const Napi::CallbackInfo& info) {
    if (handle_ != nullptr) uv_poll_stop(handle_);
    Release();
    return info.Env().Undefined();
  }

  // Stops polling at once (so the fd may be closed right after) and frees the handle on the next loop turn.
  Napi::Value Close(const Napi::CallbackInfo& info) {
    CloseHandle();
    Release();
    callback_.Reset();
    context_.reset();
    return info.Env().Undefined();
  }

  Napi::Value Ref(const Napi::CallbackInfo& info) {
    if (handle_ != nullptr) uv_ref(reinterpret_cast<uv_handle_t*>(handle_));
    return info.Env().Undefined();
  }

  Napi::Value Unref(const Napi::CallbackInfo& info) {
    if (handle_ != nullptr) uv_unref(reinterpret_cast<uv_handle_t*>(handle_));
    return info.Env().Undefined();
  }

  void Release() {
    if (started_) {
      started_ = false;
      Napi::ObjectWrap<FdWatcher>::Unref();
    }
  }

  void CloseHandle() {
    if (handle_ == nullptr) return;
    uv_poll_stop(handle_);  // removes the fd from epoll now, not at close time
    handle_->data = nullptr;
    uv_close(reinterpret_cast<uv_handle_t*>(handle_),
             [](uv_handle_t* handle) { delete reinterpret_cast<uv_poll_t*>(handle); });
    handle_ = nullptr;
  }

  static void OnPoll(uv_poll_t* handle, int /*status*/, int /*events*/) {
    // On an error (status < 0) libuv stops the handle; the callback still runs so that the next read reports it.
    FdWatcher* self = static_cast<FdWatcher*>(handle->data);
    if (self == nullptr || self->callback_.IsEmpty()) return;
    Napi::Env env = self->Env();
    Napi::HandleScope scope(env);
    self->callback_.MakeCallback(self->Value(), {}, *self->context_);
    if (env.IsExceptionPending()) {
      // napi keeps a callback's exception pending; hand it to Node (uncaughtException, or exit with the stack).
      Napi::Error error = env.GetAndClearPendingException();
      napi_fatal_exception(env, error.Value());
    }
  }

  uv_poll_t* handle_ = nullptr;
  bool started_ = false;
  Napi::FunctionReference callback_;
  std::unique_ptr<Napi::AsyncContext> context_;
};

void InitWatcher(Napi::Env env, Napi::Object exports) { FdWatcher::Init(env, exports); }

}  // namespace vxtun
