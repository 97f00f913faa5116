// Batched datagram sockets: UDP (address + port) and raw IPv4 for one protocol (address only; the kernel writes
// the outer header on send, and a receive includes it). One recvmmsg per receive call; sendmmsg until done.
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>

#include "errors.h"
#include "exports.h"

namespace vxtun {

// Messages per recvmmsg/sendmmsg call; the tables live on the stack (about 100 bytes per message).
static constexpr int kChunk = 256;

static void ToSockaddr(struct sockaddr_in& sin, uint32_t address, uint16_t port) {
  memset(&sin, 0, sizeof sin);
  sin.sin_family = AF_INET;
  sin.sin_addr.s_addr = htonl(address);
  sin.sin_port = htons(port);
}

// Asks for `bytes` of socket buffer: the FORCE option ignores rmem_max/wmem_max but needs CAP_NET_ADMIN.
static bool SetBuffer(int fd, int forceOption, int option, uint32_t bytes, const char*& failed) {
  if (bytes == 0) return true;
  int value = bytes > 0x7fffffff ? 0x7fffffff : static_cast<int>(bytes);
  if (setsockopt(fd, SOL_SOCKET, forceOption, &value, sizeof value) == 0) return true;
  if (setsockopt(fd, SOL_SOCKET, option, &value, sizeof value) == 0) return true;
  failed = option == SO_RCVBUF ? "setsockopt(SO_RCVBUF)" : "setsockopt(SO_SNDBUF)";
  return false;
}

static Napi::Value OpenBound(Napi::Env env, int type, int protocol, uint32_t address, uint16_t port,
                             uint32_t recvBufferBytes, uint32_t sendBufferBytes) {
  int fd = socket(AF_INET, type | SOCK_NONBLOCK | SOCK_CLOEXEC, protocol);
  if (fd < 0) {
    ThrowSystemError(env, errno, "socket");
    return env.Undefined();
  }
  const char* failed = nullptr;
  if (SetBuffer(fd, SO_RCVBUFFORCE, SO_RCVBUF, recvBufferBytes, failed) &&
      SetBuffer(fd, SO_SNDBUFFORCE, SO_SNDBUF, sendBufferBytes, failed)) {
    struct sockaddr_in sin;
    ToSockaddr(sin, address, port);
    if (bind(fd, reinterpret_cast<struct sockaddr*>(&sin), sizeof sin) < 0) failed = "bind";
  }
  if (failed != nullptr) {
    int err = errno;
    close(fd);
    ThrowSystemError(env, err, failed);
    return env.Undefined();
  }
  return Napi::Number::New(env, fd);
}

// udpOpen(address, port, recvBufferBytes, sendBufferBytes) -> fd. No SO_REUSEADDR: a busy port must fail.
static Napi::Value UdpOpen(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint32_t address, port, recvBytes, sendBytes;
  if (!ArgUint32(info, 0, "address", address) || !ArgUint32(info, 1, "port", port) ||
      !ArgUint32(info, 2, "recvBufferBytes", recvBytes) || !ArgUint32(info, 3, "sendBufferBytes", sendBytes)) {
    return env.Undefined();
  }
  if (port > 65535) {
    ThrowRangeError(env, "port must be 0 to 65535");
    return env.Undefined();
  }
  return OpenBound(env, SOCK_DGRAM, 0, address, static_cast<uint16_t>(port), recvBytes, sendBytes);
}

// rawOpen(protocol, bindAddress, recvBufferBytes, sendBufferBytes) -> fd.
static Napi::Value RawOpen(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint32_t protocol, address, recvBytes, sendBytes;
  if (!ArgUint32(info, 0, "protocol", protocol) || !ArgUint32(info, 1, "bindAddress", address) ||
      !ArgUint32(info, 2, "recvBufferBytes", recvBytes) || !ArgUint32(info, 3, "sendBufferBytes", sendBytes)) {
    return env.Undefined();
  }
  if (protocol < 1 || protocol > 255) {
    ThrowRangeError(env, "protocol must be 1 to 255");
    return env.Undefined();
  }
  return OpenBound(env, SOCK_RAW, static_cast<int>(protocol), address, 0, recvBytes, sendBytes);
}

// udpLocalPort(fd) -> the port bound (for port 0 binds).
static Napi::Value UdpLocalPort(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int32_t fd;
  if (!ArgInt(info, 0, "fd", fd)) return env.Undefined();
  struct sockaddr_in sin;
  socklen_t length = sizeof sin;
  if (getsockname(fd, reinterpret_cast<struct sockaddr*>(&sin), &length) < 0) {
    ThrowSystemError(env, errno, "getsockname");
    return env.Undefined();
  }
  return Napi::Number::New(env, ntohs(sin.sin_port));
}

struct Batch {
  Bytes slab;
  Array<uint32_t> offsets, lengths, addrs;
  Array<uint16_t> ports;  // empty for raw sockets
  int32_t fd, count;
};

// Arguments (fd, slab, offsets, lengths, addrs, [ports,] count) shared by the four batch calls.
static bool ArgBatch(const Napi::CallbackInfo& info, bool withPorts, Batch& batch) {
  size_t i = 0;
  batch.ports = {nullptr, 0};
  if (!ArgInt(info, i++, "fd", batch.fd) || !ArgBytes(info, i++, "slab", batch.slab) ||
      !ArgUint32Array(info, i++, "offsets", batch.offsets) || !ArgUint32Array(info, i++, "lengths", batch.lengths) ||
      !ArgUint32Array(info, i++, "addrs", batch.addrs) || (withPorts && !ArgUint16Array(info, i++, "ports", batch.ports)) ||
      !ArgInt(info, i++, "count", batch.count)) {
    return false;
  }
  size_t count = static_cast<size_t>(batch.count);
  if (count > batch.addrs.length || (withPorts && count > batch.ports.length)) {
    ThrowRangeError(info.Env(), "packet count exceeds the addrs/ports tables");
    return false;
  }
  return CheckSlots(info.Env(), batch.slab, batch.offsets, batch.lengths, count);
}

struct Messages {
  struct mmsghdr headers[kChunk];
  struct iovec iovs[kChunk];
  struct sockaddr_in names[kChunk];

  // Describes packets [first, first + n) of the batch.
  void Describe(const Batch& batch, int first, int n) {
    memset(headers, 0, sizeof(struct mmsghdr) * n);
    for (int j = 0; j < n; j++) {
      int i = first + j;
      iovs[j].iov_base = batch.slab.data + batch.offsets.data[i];
      iovs[j].iov_len = batch.lengths.data[i];
      headers[j].msg_hdr.msg_iov = &iovs[j];
      headers[j].msg_hdr.msg_iovlen = 1;
      headers[j].msg_hdr.msg_name = &names[j];
      headers[j].msg_hdr.msg_namelen = sizeof names[j];
    }
  }
};

// Errors that concern one message (its destination or size), not the socket: skip the message and go on.
static bool IsPerMessageError(int err) {
  switch (err) {
    case ENETUNREACH:
    case EHOSTUNREACH:
    case EMSGSIZE:
    case EPERM:
    case EACCES:
    case EINVAL:
    case ECONNREFUSED:
    case EDESTADDRREQ:
    case EADDRNOTAVAIL:
    case ENETDOWN:
    case EHOSTDOWN:
    case ENOBUFS:
      return true;
    default:
      return false;
  }
}

// One recvmmsg. A datagram larger than its slot is reported with length 0 (MSG_TRUNC): the caller drops it.
static Napi::Value Receive(const Napi::CallbackInfo& info, bool withPorts) {
  Napi::Env env = info.Env();
  Batch batch;
  if (!ArgBatch(info, withPorts, batch)) return env.Undefined();
  int n = batch.count < kChunk ? batch.count : kChunk;
  if (n == 0) return Napi::Number::New(env, 0);
  Messages messages;
  messages.Describe(batch, 0, n);
  int received;
  do {
    received = recvmmsg(batch.fd, messages.headers, n, MSG_DONTWAIT, nullptr);
  } while (received < 0 && errno == EINTR);
  if (received < 0) {
    // A pending ICMP error reported on the socket is consumed by this call; it says nothing about our reads.
    if (errno == EAGAIN || errno == EWOULDBLOCK || IsPerMessageError(errno)) return Napi::Number::New(env, 0);
    ThrowSystemError(env, errno, "recvmmsg");
    return env.Undefined();
  }
  for (int i = 0; i < received; i++) {
    const struct mmsghdr& header = messages.headers[i];
    batch.lengths.data[i] = (header.msg_hdr.msg_flags & MSG_TRUNC) ? 0 : header.msg_len;
    batch.addrs.data[i] = ntohl(messages.names[i].sin_addr.s_addr);
    if (withPorts) batch.ports.data[i] = ntohs(messages.names[i].sin_port);
  }
  return Napi::Number::New(env, received);
}

// sendmmsg until every message is sent or the socket is full (EAGAIN). sendmmsg returns the messages sent before
// the first failure (or -1 when the first one fails): a per-message error skips that message.
static Napi::Value Send(const Napi::CallbackInfo& info, bool withPorts) {
  Napi::Env env = info.Env();
  Batch batch;
  if (!ArgBatch(info, withPorts, batch)) return env.Undefined();
  Messages messages;
  int sent = 0;
  int next = 0;
  while (next < batch.count) {
    int n = batch.count - next < kChunk ? batch.count - next : kChunk;
    messages.Describe(batch, next, n);
    for (int j = 0; j < n; j++) {
      int i = next + j;
      ToSockaddr(messages.names[j], batch.addrs.data[i], withPorts ? batch.ports.data[i] : 0);
    }
    int done = sendmmsg(batch.fd, messages.headers, n, MSG_DONTWAIT);
    if (done > 0) {
      sent += done;
      next += done;
      continue;
    }
    if (done < 0 && errno == EINTR) continue;
    if (done < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
    if (done < 0 && IsPerMessageError(errno)) {
      next++;  // message `next` failed on its own
      continue;
    }
    if (done == 0) break;  // not expected from the kernel; never spin
    ThrowSystemError(env, errno, "sendmmsg");
    return env.Undefined();
  }
  return Napi::Number::New(env, sent);
}

static Napi::Value UdpRecv(const Napi::CallbackInfo& info) { return Receive(info, true); }
static Napi::Value UdpSend(const Napi::CallbackInfo& info) { return Send(info, true); }
static Napi::Value RawRecv(const Napi::CallbackInfo& info) { return Receive(info, false); }
static Napi::Value RawSend(const Napi::CallbackInfo& info) { return Send(info, false); }

// close(fd). EINTR still closes the fd on Linux, so it is not an error here.
static Napi::Value Close(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int32_t fd;
  if (!ArgInt(info, 0, "fd", fd)) return env.Undefined();
  if (close(fd) < 0 && errno != EINTR) ThrowSystemError(env, errno, "close");
  return env.Undefined();
}

void InitSocket(Napi::Env env, Napi::Object exports) {
  exports.Set("udpOpen", Napi::Function::New(env, UdpOpen, "udpOpen"));
  exports.Set("udpLocalPort", Napi::Function::New(env, UdpLocalPort, "udpLocalPort"));
  exports.Set("udpRecv", Napi::Function::New(env, UdpRecv, "udpRecv"));
  exports.Set("udpSend", Napi::Function::New(env, UdpSend, "udpSend"));
  exports.Set("rawOpen", Napi::Function::New(env, RawOpen, "rawOpen"));
  exports.Set("rawRecv", Napi::Function::New(env, RawRecv, "rawRecv"));
  exports.Set("rawSend", Napi::Function::New(env, RawSend, "rawSend"));
  exports.Set("close", Napi::Function::New(env, Close, "close"));
}

}  // namespace vxtun
