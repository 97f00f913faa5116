// Batched datagram sockets: UDP (address + port) and raw IPv4 for one protocol (address only; the kernel writes
// the outer header on send, and a receive includes it). One recvmmsg per receive call; sendmmsg until done.
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>

#include "errors.h"
#include "exports.h"
#include "tcp-segment.h"

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

// udpLocalPort(fd) -> the port bound (for port 0 binds), IPv4 or IPv6.
static Napi::Value UdpLocalPort(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int32_t fd;
  if (!ArgInt(info, 0, "fd", fd)) return env.Undefined();
  struct sockaddr_storage name;  // an IPv4 or IPv6 socket
  socklen_t length = sizeof name;
  if (getsockname(fd, reinterpret_cast<struct sockaddr*>(&name), &length) < 0) {
    ThrowSystemError(env, errno, "getsockname");
    return env.Undefined();
  }
  uint16_t port = name.ss_family == AF_INET6 ? reinterpret_cast<struct sockaddr_in6*>(&name)->sin6_port
                                             : reinterpret_cast<struct sockaddr_in*>(&name)->sin_port;
  return Napi::Number::New(env, ntohs(port));
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

// The errno of the most recent send that did not go out (a skipped message, a full socket), kept for the caller to
// name its drops (takeSendErrno). One Node thread runs every send, so a plain variable is enough.
static int g_lastSendErrno = 0;

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

// One non-blocking recvmmsg: the count received, 0 when nothing is waiting, -1 (errno set) on a real error. A pending
// ICMP error reported on the socket is consumed by the call; it says nothing about our reads, so it counts as 0.
static int ReceiveMessages(int fd, struct mmsghdr* headers, int n) {
  int received;
  do {
    received = recvmmsg(fd, headers, n, MSG_DONTWAIT, nullptr);
  } while (received < 0 && errno == EINTR);
  if (received < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || IsPerMessageError(errno))) return 0;
  return received;
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
  int received = ReceiveMessages(batch.fd, messages.headers, n);
  if (received < 0) {
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
    if (done < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      g_lastSendErrno = EAGAIN;
      break;
    }
    if (done < 0 && IsPerMessageError(errno)) {
      g_lastSendErrno = errno;
      next++;  // message `next` failed on its own
      continue;
    }
    if (done == 0) break;  // not expected from the kernel; never spin
    ThrowSystemError(env, errno, "sendmmsg");
    return env.Undefined();
  }
  return Napi::Number::New(env, sent);
}

// ---- UDP segmentation offload (UDP_SEGMENT) and receive coalescing (UDP_GRO) ----

// The kernel's UDP_MAX_SEGMENTS (64 on older kernels; newer ones allow 128: we keep to the common limit).
static constexpr uint32_t kMaxGsoSegments = 64;
// One IPv4 datagram: 65535 - 20 (IP) - 8 (UDP).
static constexpr uint32_t kMaxGsoBytes = 65507;

// The segments of slab[off, off + len) sent one by one (GSO refused). Returns the number sent; stops at EAGAIN.
static int SendSegments(int fd, uint8_t* data, uint32_t len, uint32_t segmentSize, void* to, socklen_t toLength) {
  struct mmsghdr headers[kMaxGsoSegments];
  struct iovec iovs[kMaxGsoSegments];
  uint32_t n = (len + segmentSize - 1) / segmentSize;
  memset(headers, 0, sizeof(struct mmsghdr) * n);
  for (uint32_t j = 0; j < n; j++) {
    uint32_t at = j * segmentSize;
    iovs[j].iov_base = data + at;
    iovs[j].iov_len = len - at < segmentSize ? len - at : segmentSize;
    headers[j].msg_hdr.msg_iov = &iovs[j];
    headers[j].msg_hdr.msg_iovlen = 1;
    headers[j].msg_hdr.msg_name = to;
    headers[j].msg_hdr.msg_namelen = toLength;
  }
  uint32_t next = 0;
  int sent = 0;
  while (next < n) {
    int done = sendmmsg(fd, headers + next, n - next, MSG_DONTWAIT);
    if (done > 0) {
      sent += done;
      next += done;
    } else if (done < 0 && errno == EINTR) {
      continue;
    } else if (done < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      g_lastSendErrno = EAGAIN;
      break;
    } else {
      if (done < 0) g_lastSendErrno = errno;
      next++;  // this segment failed on its own (or done == 0: never spin)
    }
  }
  return sent;
}

// One sendmsg with UDP_SEGMENT of data[0, len) to `to` (sockaddr_in or sockaddr_in6): the result codes of udpSendGso.
static Napi::Value SendGso(Napi::Env env, int fd, uint8_t* data, uint32_t len, uint32_t segmentSize, void* to,
                           socklen_t toLength) {
  struct iovec iov = {data, len};
  alignas(struct cmsghdr) char control[CMSG_SPACE(sizeof(uint16_t))];
  memset(control, 0, sizeof control);
  struct msghdr message;
  memset(&message, 0, sizeof message);
  message.msg_name = to;
  message.msg_namelen = toLength;
  message.msg_iov = &iov;
  message.msg_iovlen = 1;
  message.msg_control = control;
  message.msg_controllen = sizeof control;
  struct cmsghdr* cmsg = CMSG_FIRSTHDR(&message);
  cmsg->cmsg_level = SOL_UDP;
  cmsg->cmsg_type = UDP_SEGMENT;
  cmsg->cmsg_len = CMSG_LEN(sizeof(uint16_t));
  uint16_t gsoSize = static_cast<uint16_t>(segmentSize);
  memcpy(CMSG_DATA(cmsg), &gsoSize, sizeof gsoSize);
  ssize_t n;
  do {
    n = sendmsg(fd, &message, MSG_DONTWAIT);
  } while (n < 0 && errno == EINTR);
  if (n >= 0) return Napi::Number::New(env, 1);
  if (errno == EAGAIN || errno == EWOULDBLOCK) return Napi::Number::New(env, 0);
  if (errno == EIO || errno == EINVAL) {
    SendSegments(fd, data, len, segmentSize, to, toLength);
    return Napi::Number::New(env, 2);
  }
  if (errno == EMSGSIZE) {
    SendSegments(fd, data, len, segmentSize, to, toLength);
    return Napi::Number::New(env, 3);
  }
  if (IsPerMessageError(errno)) {
    g_lastSendErrno = errno;
    return Napi::Number::New(env, -1);
  }
  ThrowSystemError(env, errno, "sendmsg");
  return env.Undefined();
}

// The limits of one GSO send (RangeError when broken): shared by udpSendGso and udp6SendGso.
static bool CheckGsoArgs(Napi::Env env, const Bytes& slab, uint32_t off, uint32_t len, uint32_t segmentSize,
                         uint32_t port) {
  if (static_cast<uint64_t>(off) + len > slab.length) {
    ThrowRangeError(env, "udpSendGso: slab[off, off + len) lies outside the slab");
    return false;
  }
  if (port > 65535) {
    ThrowRangeError(env, "port must be 0 to 65535");
    return false;
  }
  if (len == 0 || len > kMaxGsoBytes) {
    ThrowRangeError(env, "udpSendGso: len must be 1 to 65507 bytes");
    return false;
  }
  if (segmentSize == 0 || segmentSize > 65507) {
    ThrowRangeError(env, "udpSendGso: segmentSize must be 1 to 65507 bytes");
    return false;
  }
  if ((len + segmentSize - 1) / segmentSize > kMaxGsoSegments) {
    ThrowRangeError(env, "udpSendGso: at most 64 segments per call");
    return false;
  }
  return true;
}

// udpSendGso(fd, slab, off, len, segmentSize, addr, port) -> 1 sent as one GSO send, 0 EAGAIN (nothing sent),
// 2 the kernel refused GSO on this socket/route (EIO: the route's device cannot checksum UDP; EINVAL) and the
// segments went one by one: stop using GSO; 3 this send only was refused (EMSGSIZE: a segment plus headers exceeds
// the route's MTU) and the segments went one by one (IP may fragment them): GSO stays usable; -1 the kernel refused
// the datagram for a reason of its destination (unreachable, ENOBUFS, EPERM from a firewall...): a drop.
static Napi::Value UdpSendGso(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int32_t fd;
  Bytes slab;
  uint32_t off, len, segmentSize, address, port;
  if (!ArgInt(info, 0, "fd", fd) || !ArgBytes(info, 1, "slab", slab) || !ArgUint32(info, 2, "off", off) ||
      !ArgUint32(info, 3, "len", len) || !ArgUint32(info, 4, "segmentSize", segmentSize) ||
      !ArgUint32(info, 5, "addr", address) || !ArgUint32(info, 6, "port", port)) {
    return env.Undefined();
  }
  if (!CheckGsoArgs(env, slab, off, len, segmentSize, port)) return env.Undefined();
  struct sockaddr_in to;
  ToSockaddr(to, address, static_cast<uint16_t>(port));
  return SendGso(env, fd, slab.data + off, len, segmentSize, &to, sizeof to);
}

// udpSetGro(fd, on): lets the kernel hand us several datagrams of one sender in one buffer (see udpRecvGro).
static Napi::Value UdpSetGro(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int32_t fd;
  bool on;
  if (!ArgInt(info, 0, "fd", fd) || !ArgBool(info, 1, "on", on)) return env.Undefined();
  int value = on ? 1 : 0;
  if (setsockopt(fd, SOL_UDP, UDP_GRO, &value, sizeof value) < 0) ThrowSystemError(env, errno, "setsockopt(UDP_GRO)");
  return env.Undefined();
}

// Messages per udpRecvGro call: each slot is large (64 KB), so fewer messages move as many bytes.
static constexpr int kGroChunk = 64;
// Room for the UDP_GRO cmsg (an int) and anything else the kernel adds.
static constexpr size_t kGroControl = 64;

// The UDP_GRO segment size of a received message when the kernel coalesced several datagrams into it, else 0.
static uint32_t GroSegmentSize(struct msghdr& message, uint32_t length) {
  uint32_t segSize = 0;
  for (struct cmsghdr* cmsg = CMSG_FIRSTHDR(&message); cmsg != nullptr; cmsg = CMSG_NXTHDR(&message, cmsg)) {
    if (cmsg->cmsg_level == SOL_UDP && cmsg->cmsg_type == UDP_GRO && cmsg->cmsg_len >= CMSG_LEN(sizeof(int))) {
      int value;
      memcpy(&value, CMSG_DATA(cmsg), sizeof value);
      if (value > 0) segSize = static_cast<uint32_t>(value);
    }
  }
  // One datagram of its own: not coalesced, whatever the kernel said.
  return segSize > 0 && segSize < length ? segSize : 0;
}

// udpRecvGro(fd, slab, offsets, lengths, addrs, ports, segSizes, max) -> count, as udpRecv; segSizes[i] = the
// segment size when the kernel coalesced several datagrams into buffer i (each segSizes[i] long but the last), else 0.
static Napi::Value UdpRecvGro(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int32_t fd, max;
  Bytes slab;
  Array<uint32_t> offsets, lengths, addrs, segSizes;
  Array<uint16_t> ports;
  if (!ArgInt(info, 0, "fd", fd) || !ArgBytes(info, 1, "slab", slab) || !ArgUint32Array(info, 2, "offsets", offsets) ||
      !ArgUint32Array(info, 3, "lengths", lengths) || !ArgUint32Array(info, 4, "addrs", addrs) ||
      !ArgUint16Array(info, 5, "ports", ports) || !ArgUint32Array(info, 6, "segSizes", segSizes) ||
      !ArgInt(info, 7, "max", max)) {
    return env.Undefined();
  }
  size_t count = static_cast<size_t>(max);
  if (count > addrs.length || count > ports.length || count > segSizes.length) {
    ThrowRangeError(env, "packet count exceeds the addrs/ports/segSizes tables");
    return env.Undefined();
  }
  if (!CheckSlots(env, slab, offsets, lengths, count)) return env.Undefined();
  int n = max < kGroChunk ? max : kGroChunk;
  if (n == 0) return Napi::Number::New(env, 0);
  struct mmsghdr headers[kGroChunk];
  struct iovec iovs[kGroChunk];
  struct sockaddr_in names[kGroChunk];
  alignas(struct cmsghdr) char controls[kGroChunk][kGroControl];
  memset(headers, 0, sizeof(struct mmsghdr) * n);
  for (int i = 0; i < n; i++) {
    iovs[i].iov_base = slab.data + offsets.data[i];
    iovs[i].iov_len = lengths.data[i];
    headers[i].msg_hdr.msg_iov = &iovs[i];
    headers[i].msg_hdr.msg_iovlen = 1;
    headers[i].msg_hdr.msg_name = &names[i];
    headers[i].msg_hdr.msg_namelen = sizeof names[i];
    headers[i].msg_hdr.msg_control = controls[i];
    headers[i].msg_hdr.msg_controllen = kGroControl;
  }
  int received = ReceiveMessages(fd, headers, n);
  if (received < 0) {
    ThrowSystemError(env, errno, "recvmmsg");
    return env.Undefined();
  }
  for (int i = 0; i < received; i++) {
    struct msghdr& message = headers[i].msg_hdr;
    lengths.data[i] = (message.msg_flags & MSG_TRUNC) ? 0 : headers[i].msg_len;
    addrs.data[i] = ntohl(names[i].sin_addr.s_addr);
    ports.data[i] = ntohs(names[i].sin_port);
    segSizes.data[i] = GroSegmentSize(message, lengths.data[i]);
  }
  return Napi::Number::New(env, received);
}

// ---- IPv6 UDP: the same calls over AF_INET6, peers as four 32-bit words (most significant first) ----
// Kept apart from the IPv4 tables above so that an IPv4 batch never pays for 28-byte names.

static void ToSockaddr6(struct sockaddr_in6& sin6, const uint32_t* words, uint16_t port) {
  memset(&sin6, 0, sizeof sin6);
  sin6.sin6_family = AF_INET6;
  for (int k = 0; k < 4; k++) {
    uint32_t word = htonl(words[k]);
    memcpy(&sin6.sin6_addr.s6_addr[4 * k], &word, 4);
  }
  sin6.sin6_port = htons(port);
}

static void FromSockaddr6(const struct sockaddr_in6& sin6, uint32_t* words) {
  for (int k = 0; k < 4; k++) {
    uint32_t word;
    memcpy(&word, &sin6.sin6_addr.s6_addr[4 * k], 4);
    words[k] = ntohl(word);
  }
}

// udp6Open(w0, w1, w2, w3, port, recvBufferBytes, sendBufferBytes) -> fd. IPV6_V6ONLY: the socket never sees IPv4
// (an IPv4-mapped peer would be a second name for an IPv4 underlay). IPV6_MTU_DISCOVER = IPV6_PMTUDISC_DO and
// IPV6_DONTFRAG: a datagram above the path MTU fails with EMSGSIZE instead of being fragmented at the source, as the
// kernel's vxlan device behaves over IPv6 (drivers/net/vxlan/vxlan_core.c: no DF knob for IPv6; the inner sender gets
// Packet Too Big from skb_tunnel_check_pmtu). No SO_REUSEADDR: a busy port must fail.
static Napi::Value Udp6Open(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint32_t words[4], port, recvBytes, sendBytes;
  if (!ArgUint32(info, 0, "w0", words[0]) || !ArgUint32(info, 1, "w1", words[1]) ||
      !ArgUint32(info, 2, "w2", words[2]) || !ArgUint32(info, 3, "w3", words[3]) ||
      !ArgUint32(info, 4, "port", port) || !ArgUint32(info, 5, "recvBufferBytes", recvBytes) ||
      !ArgUint32(info, 6, "sendBufferBytes", sendBytes)) {
    return env.Undefined();
  }
  if (port > 65535) {
    ThrowRangeError(env, "port must be 0 to 65535");
    return env.Undefined();
  }
  int fd = socket(AF_INET6, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    ThrowSystemError(env, errno, "socket");
    return env.Undefined();
  }
  const char* failed = nullptr;
  int on = 1;
  int pmtu = IPV6_PMTUDISC_DO;
  if (setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &on, sizeof on) < 0) {
    failed = "setsockopt(IPV6_V6ONLY)";
  } else if (setsockopt(fd, IPPROTO_IPV6, IPV6_MTU_DISCOVER, &pmtu, sizeof pmtu) < 0) {
    failed = "setsockopt(IPV6_MTU_DISCOVER)";
  } else if (setsockopt(fd, IPPROTO_IPV6, IPV6_DONTFRAG, &on, sizeof on) < 0) {
    failed = "setsockopt(IPV6_DONTFRAG)";
  } else if (SetBuffer(fd, SO_RCVBUFFORCE, SO_RCVBUF, recvBytes, failed) &&
             SetBuffer(fd, SO_SNDBUFFORCE, SO_SNDBUF, sendBytes, failed)) {
    struct sockaddr_in6 sin6;
    ToSockaddr6(sin6, words, static_cast<uint16_t>(port));
    if (bind(fd, reinterpret_cast<struct sockaddr*>(&sin6), sizeof sin6) < 0) failed = "bind";
  }
  if (failed != nullptr) {
    int err = errno;
    close(fd);
    ThrowSystemError(env, err, failed);
    return env.Undefined();
  }
  return Napi::Number::New(env, fd);
}

// ip6SetDontFragment(fd, on): on (the default of udp6Open) IPV6_PMTUDISC_DO + IPV6_DONTFRAG, a datagram above the path
// MTU fails with EMSGSIZE; off IPV6_PMTUDISC_DONT + no DONTFRAG, the kernel fragments it at the source (RFC 8200 5:
// only the source may fragment) up to 64 KB. Every later send follows it, GSO sends included (ipv6(7)).
static Napi::Value Ip6SetDontFragment(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int32_t fd;
  bool on;
  if (!ArgInt(info, 0, "fd", fd) || !ArgBool(info, 1, "on", on)) return env.Undefined();
  int pmtu = on ? IPV6_PMTUDISC_DO : IPV6_PMTUDISC_DONT;
  int dontfrag = on ? 1 : 0;
  if (setsockopt(fd, IPPROTO_IPV6, IPV6_MTU_DISCOVER, &pmtu, sizeof pmtu) < 0) {
    ThrowSystemError(env, errno, "setsockopt(IPV6_MTU_DISCOVER)");
  } else if (setsockopt(fd, IPPROTO_IPV6, IPV6_DONTFRAG, &dontfrag, sizeof dontfrag) < 0) {
    ThrowSystemError(env, errno, "setsockopt(IPV6_DONTFRAG)");
  }
  return env.Undefined();
}

// ip6GetMtuDiscover(fd) -> [IPV6_MTU_DISCOVER mode (0-5), IPV6_DONTFRAG (0/1)], for diagnostics and tests.
static Napi::Value Ip6GetMtuDiscover(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int32_t fd;
  if (!ArgInt(info, 0, "fd", fd)) return env.Undefined();
  int mode = 0, dontfrag = 0;
  socklen_t length = sizeof mode;
  if (getsockopt(fd, IPPROTO_IPV6, IPV6_MTU_DISCOVER, &mode, &length) < 0) {
    ThrowSystemError(env, errno, "getsockopt(IPV6_MTU_DISCOVER)");
    return env.Undefined();
  }
  length = sizeof dontfrag;
  if (getsockopt(fd, IPPROTO_IPV6, IPV6_DONTFRAG, &dontfrag, &length) < 0) {
    ThrowSystemError(env, errno, "getsockopt(IPV6_DONTFRAG)");
    return env.Undefined();
  }
  Napi::Array result = Napi::Array::New(env, 2);
  result.Set(uint32_t{0}, Napi::Number::New(env, mode));
  result.Set(uint32_t{1}, Napi::Number::New(env, dontfrag));
  return result;
}

// Arguments (fd, slab, offsets, lengths, addrs6, ports, count) of udp6Recv/udp6Send; addrs6 holds 4 words a packet.
static bool ArgBatch6(const Napi::CallbackInfo& info, Batch& batch) {
  if (!ArgInt(info, 0, "fd", batch.fd) || !ArgBytes(info, 1, "slab", batch.slab) ||
      !ArgUint32Array(info, 2, "offsets", batch.offsets) || !ArgUint32Array(info, 3, "lengths", batch.lengths) ||
      !ArgUint32Array(info, 4, "addrs6", batch.addrs) || !ArgUint16Array(info, 5, "ports", batch.ports) ||
      !ArgInt(info, 6, "count", batch.count)) {
    return false;
  }
  size_t count = static_cast<size_t>(batch.count);
  if (count * 4 > batch.addrs.length || count > batch.ports.length) {
    ThrowRangeError(info.Env(), "packet count exceeds the addrs6/ports tables (addrs6 needs 4 words a packet)");
    return false;
  }
  return CheckSlots(info.Env(), batch.slab, batch.offsets, batch.lengths, count);
}

struct Messages6 {
  struct mmsghdr headers[kChunk];
  struct iovec iovs[kChunk];
  struct sockaddr_in6 names[kChunk];

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

// udp6Recv(fd, slab, offsets, lengths, addrs6, ports, max) -> count: one recvmmsg, as udpRecv (MSG_TRUNC: length 0).
static Napi::Value Udp6Recv(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Batch batch;
  if (!ArgBatch6(info, batch)) return env.Undefined();
  int n = batch.count < kChunk ? batch.count : kChunk;
  if (n == 0) return Napi::Number::New(env, 0);
  Messages6 messages;
  messages.Describe(batch, 0, n);
  int received = ReceiveMessages(batch.fd, messages.headers, n);
  if (received < 0) {
    ThrowSystemError(env, errno, "recvmmsg");
    return env.Undefined();
  }
  for (int i = 0; i < received; i++) {
    const struct mmsghdr& header = messages.headers[i];
    batch.lengths.data[i] = (header.msg_hdr.msg_flags & MSG_TRUNC) ? 0 : header.msg_len;
    FromSockaddr6(messages.names[i], batch.addrs.data + 4 * i);
    batch.ports.data[i] = ntohs(messages.names[i].sin6_port);
  }
  return Napi::Number::New(env, received);
}

// udp6Send(fd, slab, offsets, lengths, addrs6, ports, count) -> sent: sendmmsg until done or EAGAIN, as udpSend.
static Napi::Value Udp6Send(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Batch batch;
  if (!ArgBatch6(info, batch)) return env.Undefined();
  Messages6 messages;
  int sent = 0;
  int next = 0;
  while (next < batch.count) {
    int n = batch.count - next < kChunk ? batch.count - next : kChunk;
    messages.Describe(batch, next, n);
    for (int j = 0; j < n; j++) {
      int i = next + j;
      ToSockaddr6(messages.names[j], batch.addrs.data + 4 * i, batch.ports.data[i]);
    }
    int done = sendmmsg(batch.fd, messages.headers, n, MSG_DONTWAIT);
    if (done > 0) {
      sent += done;
      next += done;
      continue;
    }
    if (done < 0 && errno == EINTR) continue;
    if (done < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      g_lastSendErrno = EAGAIN;
      break;
    }
    if (done < 0 && IsPerMessageError(errno)) {
      g_lastSendErrno = errno;
      next++;
      continue;
    }
    if (done == 0) break;
    ThrowSystemError(env, errno, "sendmmsg");
    return env.Undefined();
  }
  return Napi::Number::New(env, sent);
}

// udp6SendGso(fd, slab, off, len, segmentSize, w0, w1, w2, w3, port) -> as udpSendGso, to [w0:w1:w2:w3]:port.
static Napi::Value Udp6SendGso(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int32_t fd;
  Bytes slab;
  uint32_t off, len, segmentSize, words[4], port;
  if (!ArgInt(info, 0, "fd", fd) || !ArgBytes(info, 1, "slab", slab) || !ArgUint32(info, 2, "off", off) ||
      !ArgUint32(info, 3, "len", len) || !ArgUint32(info, 4, "segmentSize", segmentSize) ||
      !ArgUint32(info, 5, "w0", words[0]) || !ArgUint32(info, 6, "w1", words[1]) ||
      !ArgUint32(info, 7, "w2", words[2]) || !ArgUint32(info, 8, "w3", words[3]) || !ArgUint32(info, 9, "port", port)) {
    return env.Undefined();
  }
  if (!CheckGsoArgs(env, slab, off, len, segmentSize, port)) return env.Undefined();
  struct sockaddr_in6 to;
  ToSockaddr6(to, words, static_cast<uint16_t>(port));
  return SendGso(env, fd, slab.data + off, len, segmentSize, &to, sizeof to);
}

// udp6RecvGro(fd, slab, offsets, lengths, addrs6, ports, segSizes, max) -> count, as udpRecvGro.
static Napi::Value Udp6RecvGro(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int32_t fd, max;
  Bytes slab;
  Array<uint32_t> offsets, lengths, addrs6, segSizes;
  Array<uint16_t> ports;
  if (!ArgInt(info, 0, "fd", fd) || !ArgBytes(info, 1, "slab", slab) || !ArgUint32Array(info, 2, "offsets", offsets) ||
      !ArgUint32Array(info, 3, "lengths", lengths) || !ArgUint32Array(info, 4, "addrs6", addrs6) ||
      !ArgUint16Array(info, 5, "ports", ports) || !ArgUint32Array(info, 6, "segSizes", segSizes) ||
      !ArgInt(info, 7, "max", max)) {
    return env.Undefined();
  }
  size_t count = static_cast<size_t>(max);
  if (count * 4 > addrs6.length || count > ports.length || count > segSizes.length) {
    ThrowRangeError(env, "packet count exceeds the addrs6/ports/segSizes tables");
    return env.Undefined();
  }
  if (!CheckSlots(env, slab, offsets, lengths, count)) return env.Undefined();
  int n = max < kGroChunk ? max : kGroChunk;
  if (n == 0) return Napi::Number::New(env, 0);
  struct mmsghdr headers[kGroChunk];
  struct iovec iovs[kGroChunk];
  struct sockaddr_in6 names[kGroChunk];
  alignas(struct cmsghdr) char controls[kGroChunk][kGroControl];
  memset(headers, 0, sizeof(struct mmsghdr) * n);
  for (int i = 0; i < n; i++) {
    iovs[i].iov_base = slab.data + offsets.data[i];
    iovs[i].iov_len = lengths.data[i];
    headers[i].msg_hdr.msg_iov = &iovs[i];
    headers[i].msg_hdr.msg_iovlen = 1;
    headers[i].msg_hdr.msg_name = &names[i];
    headers[i].msg_hdr.msg_namelen = sizeof names[i];
    headers[i].msg_hdr.msg_control = controls[i];
    headers[i].msg_hdr.msg_controllen = kGroControl;
  }
  int received = ReceiveMessages(fd, headers, n);
  if (received < 0) {
    ThrowSystemError(env, errno, "recvmmsg");
    return env.Undefined();
  }
  for (int i = 0; i < received; i++) {
    struct msghdr& message = headers[i].msg_hdr;
    lengths.data[i] = (message.msg_flags & MSG_TRUNC) ? 0 : headers[i].msg_len;
    FromSockaddr6(names[i], addrs6.data + 4 * i);
    ports.data[i] = ntohs(names[i].sin6_port);
    segSizes.data[i] = GroSegmentSize(message, lengths.data[i]);
  }
  return Napi::Number::New(env, received);
}

static Napi::Value UdpRecv(const Napi::CallbackInfo& info) { return Receive(info, true); }
static Napi::Value UdpSend(const Napi::CallbackInfo& info) { return Send(info, true); }
static Napi::Value RawRecv(const Napi::CallbackInfo& info) { return Receive(info, false); }
static Napi::Value RawSend(const Napi::CallbackInfo& info) { return Send(info, false); }

// ---- IP-in-IP: a TCP super-packet sent as its segments in one sendmmsg ----

// Most segments one rawSendSegments call makes (a 64 KB super-packet at an MSS of 536 makes 123).
static constexpr size_t kMaxRawSegments = 128;

// rawSendSegments(fd, slab, pktOff, pktLen, hdrLen, gsoSize, csumStart, addr, port, scratch, segLengths) -> segments
// the kernel took, or -1 when the super-packet cannot be segmented (nothing sent). `port` is 0 for raw sockets (which
// ignore it); a UDP socket's fd works too, the segments then being UDP payloads (how the unit tests run it without root). Each segment goes out as two iovecs,
// its own IPv4 + TCP headers (written into scratch, checksums complete: tcp-segment.h) and its payload read in place
// from the super-packet, so the payload is copied once, by the kernel. The raw socket writes the outer header.
// segLengths[i] gets segment i's length. Per-message errors skip the message, EAGAIN stops (as rawSend).
static Napi::Value RawSendSegments(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int32_t fd;
  Bytes slab, scratch;
  uint32_t pktOff, pktLen, hdrLen, gsoSize, csumStart, addr, port;
  Array<uint32_t> segLengths;
  if (!ArgInt(info, 0, "fd", fd) || !ArgBytes(info, 1, "slab", slab) || !ArgUint32(info, 2, "pktOff", pktOff) ||
      !ArgUint32(info, 3, "pktLen", pktLen) || !ArgUint32(info, 4, "hdrLen", hdrLen) ||
      !ArgUint32(info, 5, "gsoSize", gsoSize) || !ArgUint32(info, 6, "csumStart", csumStart) ||
      !ArgUint32(info, 7, "addr", addr) || !ArgUint32(info, 8, "port", port) || !ArgBytes(info, 9, "scratch", scratch) ||
      !ArgUint32Array(info, 10, "segLengths", segLengths)) {
    return env.Undefined();
  }
  if (port > 0xffff) {
    ThrowRangeError(env, "rawSendSegments: port must be 0 to 65535");
    return env.Undefined();
  }
  if (static_cast<uint64_t>(pktOff) + pktLen > slab.length) {
    ThrowRangeError(env, "rawSendSegments: the packet lies outside its buffer");
    return env.Undefined();
  }
  SuperPacket s;
  if (!ParseSuperPacket(slab.data + pktOff, pktLen, hdrLen, gsoSize, csumStart, s)) return Napi::Number::New(env, -1);
  if (s.count > kMaxRawSegments || s.count > segLengths.length || s.count * s.headers > scratch.length) {
    return Napi::Number::New(env, -1);
  }
  struct mmsghdr headers[kMaxRawSegments];
  struct iovec iovs[kMaxRawSegments][2];
  struct sockaddr_in to;
  ToSockaddr(to, addr, static_cast<uint16_t>(port));
  const uint8_t* data = s.ip + s.headers;
  size_t done = 0;
  memset(headers, 0, sizeof(struct mmsghdr) * s.count);
  for (size_t i = 0; i < s.count; i++) {
    size_t chunk = s.payload - done < s.gsoSize ? s.payload - done : s.gsoSize;
    uint8_t* hdr = scratch.data + i * s.headers;
    WriteSegmentHeaders(s, i, done, chunk, data + done, hdr);
    iovs[i][0].iov_base = hdr;
    iovs[i][0].iov_len = s.headers;
    iovs[i][1].iov_base = const_cast<uint8_t*>(data + done);
    iovs[i][1].iov_len = chunk;
    headers[i].msg_hdr.msg_iov = iovs[i];
    headers[i].msg_hdr.msg_iovlen = chunk > 0 ? 2 : 1;
    headers[i].msg_hdr.msg_name = &to;
    headers[i].msg_hdr.msg_namelen = sizeof to;
    segLengths.data[i] = static_cast<uint32_t>(s.headers + chunk);
    done += chunk;
  }
  int count = static_cast<int>(s.count);
  int sent = 0;
  int next = 0;
  while (next < count) {
    int took = sendmmsg(fd, headers + next, count - next, MSG_DONTWAIT);
    if (took > 0) {
      sent += took;
      next += took;
      continue;
    }
    if (took < 0 && errno == EINTR) continue;
    if (took < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      g_lastSendErrno = EAGAIN;
      break;
    }
    if (took < 0 && IsPerMessageError(errno)) {
      g_lastSendErrno = errno;
      next++;  // segment `next` failed on its own
      continue;
    }
    if (took == 0) break;
    ThrowSystemError(env, errno, "sendmmsg");
    return env.Undefined();
  }
  return Napi::Number::New(env, sent);
}

// ipSetMtuDiscover(fd, mode): IP_MTU_DISCOVER on a UDP or raw IPv4 socket, mode 0 IP_PMTUDISC_DONT (DF clear, the
// kernel fragments what exceeds the route MTU), 1 IP_PMTUDISC_WANT (the socket default: DF set when the datagram fits),
// 2 IP_PMTUDISC_DO (DF always set; a datagram above the path MTU fails with EMSGSIZE). Applies to every later send,
// UDP GSO sends included (ip(7); net/ipv4/ip_output.c __ip_make_skb decides DF from it).
static Napi::Value IpSetMtuDiscover(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int32_t fd, mode;
  if (!ArgInt(info, 0, "fd", fd) || !ArgInt(info, 1, "mode", mode)) return env.Undefined();
  if (mode != IP_PMTUDISC_DONT && mode != IP_PMTUDISC_WANT && mode != IP_PMTUDISC_DO) {
    ThrowRangeError(env, "mode must be 0 (IP_PMTUDISC_DONT), 1 (IP_PMTUDISC_WANT) or 2 (IP_PMTUDISC_DO)");
    return env.Undefined();
  }
  if (setsockopt(fd, IPPROTO_IP, IP_MTU_DISCOVER, &mode, sizeof mode) < 0) {
    ThrowSystemError(env, errno, "setsockopt(IP_MTU_DISCOVER)");
  }
  return env.Undefined();
}

// ipGetMtuDiscover(fd) -> the socket's IP_MTU_DISCOVER mode (0-5, see ip(7)).
static Napi::Value IpGetMtuDiscover(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int32_t fd;
  if (!ArgInt(info, 0, "fd", fd)) return env.Undefined();
  int mode = 0;
  socklen_t length = sizeof mode;
  if (getsockopt(fd, IPPROTO_IP, IP_MTU_DISCOVER, &mode, &length) < 0) {
    ThrowSystemError(env, errno, "getsockopt(IP_MTU_DISCOVER)");
    return env.Undefined();
  }
  return Napi::Number::New(env, mode);
}

// close(fd). EINTR still closes the fd on Linux, so it is not an error here.
static Napi::Value Close(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int32_t fd;
  if (!ArgInt(info, 0, "fd", fd)) return env.Undefined();
  if (close(fd) < 0 && errno != EINTR) ThrowSystemError(env, errno, "close");
  return env.Undefined();
}

// takeSendErrno() -> the errno of the most recent send that did not go out since the last call (0: none), and clears it.
static Napi::Value TakeSendErrno(const Napi::CallbackInfo& info) {
  int err = g_lastSendErrno;
  g_lastSendErrno = 0;
  return Napi::Number::New(info.Env(), err);
}

void InitSocket(Napi::Env env, Napi::Object exports) {
  exports.Set("takeSendErrno", Napi::Function::New(env, TakeSendErrno, "takeSendErrno"));
  exports.Set("udpOpen", Napi::Function::New(env, UdpOpen, "udpOpen"));
  exports.Set("udpLocalPort", Napi::Function::New(env, UdpLocalPort, "udpLocalPort"));
  exports.Set("udpRecv", Napi::Function::New(env, UdpRecv, "udpRecv"));
  exports.Set("udpSend", Napi::Function::New(env, UdpSend, "udpSend"));
  exports.Set("udpSendGso", Napi::Function::New(env, UdpSendGso, "udpSendGso"));
  exports.Set("udpSetGro", Napi::Function::New(env, UdpSetGro, "udpSetGro"));
  exports.Set("udpRecvGro", Napi::Function::New(env, UdpRecvGro, "udpRecvGro"));
  exports.Set("rawOpen", Napi::Function::New(env, RawOpen, "rawOpen"));
  exports.Set("rawRecv", Napi::Function::New(env, RawRecv, "rawRecv"));
  exports.Set("rawSend", Napi::Function::New(env, RawSend, "rawSend"));
  exports.Set("rawSendSegments", Napi::Function::New(env, RawSendSegments, "rawSendSegments"));
  exports.Set("close", Napi::Function::New(env, Close, "close"));
  exports.Set("ipSetMtuDiscover", Napi::Function::New(env, IpSetMtuDiscover, "ipSetMtuDiscover"));
  exports.Set("ipGetMtuDiscover", Napi::Function::New(env, IpGetMtuDiscover, "ipGetMtuDiscover"));
  exports.Set("udp6Open", Napi::Function::New(env, Udp6Open, "udp6Open"));
  exports.Set("udp6Recv", Napi::Function::New(env, Udp6Recv, "udp6Recv"));
  exports.Set("udp6Send", Napi::Function::New(env, Udp6Send, "udp6Send"));
  exports.Set("udp6SendGso", Napi::Function::New(env, Udp6SendGso, "udp6SendGso"));
  exports.Set("udp6RecvGro", Napi::Function::New(env, Udp6RecvGro, "udp6RecvGro"));
  exports.Set("ip6SetDontFragment", Napi::Function::New(env, Ip6SetDontFragment, "ip6SetDontFragment"));
  exports.Set("ip6GetMtuDiscover", Napi::Function::New(env, Ip6GetMtuDiscover, "ip6GetMtuDiscover"));
}

}  // namespace vxtun
