{
  "variables": {
    "have_liburing%": "<!(test -f /usr/include/liburing.h && echo 1 || echo 0)"
  },
  "targets": [
    {
      "target_name": "vxtun",
      "sources": ["native/addon.cc", "native/errors.cc", "native/tun.cc", "native/socket.cc", "native/watcher.cc", "native/offload.cc", "native/lock.cc", "native/uring.cc"],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NODE_ADDON_API_DISABLE_CPP_EXCEPTIONS"],
      "cflags_cc": ["-O2", "-std=c++17", "-Wall", "-Wextra"],
      "conditions": [
        ["have_liburing==1", {"defines": ["VXTUN_HAVE_LIBURING"], "libraries": ["-luring"]}]
      ]
    }
  ]
}
