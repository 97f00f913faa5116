// TUN device: open (TUNSETIFF), configure (MTU, address, up) and batched read/write of bare IP packets.
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <netinet/in.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cstring>

#include "errors.h"
#include "exports.h"
#include "tun-io.h"

namespace vxtun {

static bool ArgInterfaceName(const Napi::CallbackInfo& info, size_t index, struct ifreq& ifr) {
  std::string name;
  if (!ArgString(info, index, "name", name)) return false;
  if (name.empty() || name.size() >= IFNAMSIZ) {
    ThrowRangeError(info.Env(), "interface name must be 1 to 15 bytes");
    return false;
  }
  memset(&ifr, 0, sizeof ifr);
  memcpy(ifr.ifr_name, name.data(), name.size());
  return true;
}

// With a vnet header every read starts with a 10-byte struct virtio_net_hdr (no num_buffers) and every write must;
// the offloads let the kernel hand us TCP super-packets (TSO4, TSO6) and packets with a partial checksum (CSUM).
static constexpr int kVnetHdrSize = 10;
// UDP segmentation offload (linux/if_tun.h since 6.2; Debian 12's headers predate it). The kernel takes the two only
// together (tun_set_offload in drivers/net/tun.c) and refuses unknown bits with EINVAL, which is the probe.
#ifndef TUN_F_USO4
#define TUN_F_USO4 0x20
#endif
#ifndef TUN_F_USO6
#define TUN_F_USO6 0x40
#endif

// Whether the kernel knows UDP segmentation offload on a TUN (6.2+), probed with TUNSETOFFLOAD. The same release
// taught virtio_net_hdr_to_skb (include/linux/virtio_net.h) to accept VIRTIO_NET_HDR_GSO_UDP_L4 on writes, which is
// what vxtun uses. The device keeps CSUM | TSO4 | TSO6 only: with USO set the kernel would also hand us UDP super-packets
// to read, which the outbound path does not split. Returns 1 supported, 0 not (EINVAL), or -errno.
// What an offload TUN hands us: TCP super-packets of both families (TSO6 is split by src/dataplane/tso6.ts).
static const unsigned long kTunOffloads = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6;

static int ProbeUso(int fd) {
  unsigned long base = kTunOffloads;
  if (ioctl(fd, TUNSETOFFLOAD, base | TUN_F_USO4 | TUN_F_USO6) < 0) {
    if (errno == EINVAL) return 0;
    return -errno;
  }
  if (ioctl(fd, TUNSETOFFLOAD, base) < 0) return -errno;
  return 1;
}

// tunOpen(name, vnetHdr?, probeUso?) -> { fd, name, uso }. uso: the kernel takes UDP GSO writes (probeUso only).
static Napi::Value TunOpen(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  struct ifreq ifr;
  if (!ArgInterfaceName(info, 0, ifr)) return env.Undefined();
  bool vnetHdr = false, probeUso = false;
  if (info.Length() > 1 && !info[1].IsUndefined() && !ArgBool(info, 1, "vnetHdr", vnetHdr)) return env.Undefined();
  if (info.Length() > 2 && !info[2].IsUndefined() && !ArgBool(info, 2, "probeUso", probeUso)) return env.Undefined();
  int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) {
    ThrowSystemError(env, errno, "open");
    return env.Undefined();
  }
  ifr.ifr_flags = IFF_TUN | IFF_NO_PI | (vnetHdr ? IFF_VNET_HDR : 0);
  if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
    int err = errno;
    close(fd);
    ThrowSystemError(env, err, "ioctl(TUNSETIFF)");
    return env.Undefined();
  }
  bool uso = false;
  if (vnetHdr) {
    int size = kVnetHdrSize;
    const char* failed = nullptr;
    if (ioctl(fd, TUNSETVNETHDRSZ, &size) < 0) {
      failed = "ioctl(TUNSETVNETHDRSZ)";
    } else if (ioctl(fd, TUNSETOFFLOAD, kTunOffloads) < 0) {
      failed = "ioctl(TUNSETOFFLOAD)";
    } else if (probeUso) {
      int probed = ProbeUso(fd);
      if (probed < 0) {
        errno = -probed;
        failed = "ioctl(TUNSETOFFLOAD)";
      }
      uso = probed == 1;
    }
    if (failed != nullptr) {
      int err = errno;
      close(fd);
      ThrowSystemError(env, err, failed);
      return env.Undefined();
    }
  }
  Napi::Object result = Napi::Object::New(env);
  result.Set("fd", Napi::Number::New(env, fd));
  result.Set("name", Napi::String::New(env, ifr.ifr_name));
  result.Set("uso", Napi::Boolean::New(env, uso));
  return result;
}

static void SetInet(struct sockaddr* target, uint32_t hostOrder) {
  struct sockaddr_in sin;
  memset(&sin, 0, sizeof sin);
  sin.sin_family = AF_INET;
  sin.sin_addr.s_addr = htonl(hostOrder);
  memcpy(target, &sin, sizeof sin);
}

// tunConfigure(name, mtu, address, prefixLength, up): the classic interface ioctls on an AF_INET socket.
static Napi::Value TunConfigure(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  struct ifreq base;
  int32_t mtu, prefixLength;
  uint32_t address;
  bool up;
  if (!ArgInterfaceName(info, 0, base) || !ArgInt(info, 1, "mtu", mtu) || !ArgUint32(info, 2, "address", address) ||
      !ArgInt(info, 3, "prefixLength", prefixLength) || !ArgBool(info, 4, "up", up)) {
    return env.Undefined();
  }
  if (prefixLength > 32) {
    ThrowRangeError(env, "prefixLength must be 0 to 32");
    return env.Undefined();
  }
  int sock = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (sock < 0) {
    ThrowSystemError(env, errno, "socket");
    return env.Undefined();
  }
  const char* failed = nullptr;
  struct ifreq ifr = base;
  ifr.ifr_mtu = mtu;
  if (ioctl(sock, SIOCSIFMTU, &ifr) < 0) failed = "ioctl(SIOCSIFMTU)";
  if (failed == nullptr && address != 0) {
    ifr = base;
    SetInet(&ifr.ifr_addr, address);
    if (ioctl(sock, SIOCSIFADDR, &ifr) < 0) failed = "ioctl(SIOCSIFADDR)";
  }
  if (failed == nullptr && address != 0) {
    ifr = base;
    uint32_t mask = prefixLength == 0 ? 0 : ~0u << (32 - prefixLength);
    SetInet(&ifr.ifr_netmask, mask);
    if (ioctl(sock, SIOCSIFNETMASK, &ifr) < 0) failed = "ioctl(SIOCSIFNETMASK)";
  }
  if (failed == nullptr) {
    ifr = base;
    if (ioctl(sock, SIOCGIFFLAGS, &ifr) < 0) {
      failed = "ioctl(SIOCGIFFLAGS)";
    } else {
      if (up) {
        ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
      } else {
        ifr.ifr_flags &= ~IFF_UP;
      }
      if (ioctl(sock, SIOCSIFFLAGS, &ifr) < 0) failed = "ioctl(SIOCSIFFLAGS)";
    }
  }
  int err = errno;
  close(sock);
  if (failed != nullptr) ThrowSystemError(env, err, failed);
  return env.Undefined();
}

// tunRead(fd, slab, offsets, lengths, max) -> count. lengths[i] is the capacity in, the packet size out. A packet
// longer than its slot (the TUN MTU raised by hand above what the slots were sized for) is reported with a length
// above the capacity, and the caller must drop it: the kernel stores what fits and drops the rest, and depending on
// its version returns the full length or only what it copied (tun_put_user in drivers/net/tun.c; 6.x returns the
// copied length, which alone cannot tell a cut packet from one that fits exactly). So each read gets one spare byte
// after the slot, in a second iovec on our stack: a read that reaches it did not fit.
// With a ring (uring.cc) the reads go in one io_uring_enter; filled slots then come first (offset/length pairs may
// be swapped with unfilled ones).
static Napi::Value TunRead(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int32_t fd, max;
  int ring;
  Bytes slab;
  Array<uint32_t> offsets, lengths;
  if (!ArgInt(info, 0, "fd", fd) || !ArgBytes(info, 1, "slab", slab) || !ArgUint32Array(info, 2, "offsets", offsets) ||
      !ArgUint32Array(info, 3, "lengths", lengths) || !ArgInt(info, 4, "max", max) ||
      !CheckSlots(env, slab, offsets, lengths, max) || !ArgRing(info, 5, ring)) {
    return env.Undefined();
  }
  if (ring != kNoRing) {
    int err = 0;
    int n = ReadUring(ring, fd, slab.data, offsets.data, lengths.data, max, &err);
    if (n < 0) {
      ThrowSystemError(env, err, "read");
      return env.Undefined();
    }
    return Napi::Number::New(env, n);
  }
  int count = 0;
  uint8_t spill;
  struct iovec iov[2];
  iov[1].iov_base = &spill;
  iov[1].iov_len = 1;
  while (count < max) {
    iov[0].iov_base = slab.data + offsets.data[count];
    iov[0].iov_len = lengths.data[count];
    ssize_t n = readv(fd, iov, 2);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) break;
      if (count > 0) break;  // deliver what we have; the error comes back on the next call
      ThrowSystemError(env, errno, "read");
      return env.Undefined();
    }
    // n > capacity: it did not fit (capacity + 1, or the full length). Never clamped: that would pass a cut packet on.
    lengths.data[count++] = static_cast<uint32_t>(n);
  }
  return Napi::Number::New(env, count);
}

int WritePlanSyscalls(int fd, const WritePlan& plan, int* fatalErrno) {
  int accepted = 0;
  for (const WritePlan::Write& w : plan.writes) {
    ssize_t n;
    do {
      n = writev(fd, &plan.iov[w.firstIov], static_cast<int>(w.iovCount));
    } while (n < 0 && errno == EINTR);
    if (n >= 0) {
      accepted += static_cast<int>(w.members);
      continue;
    }
    if (errno == EAGAIN || errno == EWOULDBLOCK) break;
    if (IsFatalWriteError(errno)) {
      *fatalErrno = errno;
      return -1;
    }
  }
  return accepted;
}

// tunWrite(fd, slab, offsets, lengths, count, ring?) -> accepted. A packet the kernel rejects (EINVAL, EIO while the
// device is down...) is skipped; EAGAIN stops the batch. With a ring, the whole batch goes in one io_uring_enter.
static Napi::Value TunWrite(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int32_t fd, count;
  int ring;
  Bytes slab;
  Array<uint32_t> offsets, lengths;
  if (!ArgInt(info, 0, "fd", fd) || !ArgBytes(info, 1, "slab", slab) || !ArgUint32Array(info, 2, "offsets", offsets) ||
      !ArgUint32Array(info, 3, "lengths", lengths) || !ArgInt(info, 4, "count", count) ||
      !CheckSlots(env, slab, offsets, lengths, count) || !ArgRing(info, 5, ring)) {
    return env.Undefined();
  }
  static WritePlan plan;
  plan.Clear();
  for (int i = 0; i < count; i++) {
    plan.Begin(1);
    plan.Add(slab.data + offsets.data[i], lengths.data[i]);
  }
  int fatal = 0;
  int accepted = ring == kNoRing ? WritePlanSyscalls(fd, plan, &fatal) : WritePlanUring(ring, fd, plan, &fatal);
  if (accepted < 0) {
    ThrowSystemError(env, fatal, "write");
    return env.Undefined();
  }
  return Napi::Number::New(env, accepted);
}

// seqpacketPair() -> [fd, fd]: a connected AF_UNIX SOCK_SEQPACKET pair, non-blocking. A stand-in for a TUN fd in
// tests that cannot be root: every read and write is one whole message, as on a TUN, so tunRead, tunWrite and
// tunWriteCoalesced (with or without a ring) run their real system calls against it.
static Napi::Value SeqpacketPair(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fds[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds) < 0) {
    ThrowSystemError(env, errno, "socketpair");
    return env.Undefined();
  }
  // Room for a batch of 64 KB super-packets on either side.
  int size = 4 << 20;
  setsockopt(fds[0], SOL_SOCKET, SO_SNDBUF, &size, sizeof size);
  setsockopt(fds[1], SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
  Napi::Array pair = Napi::Array::New(env, 2);
  pair.Set(0u, Napi::Number::New(env, fds[0]));
  pair.Set(1u, Napi::Number::New(env, fds[1]));
  return pair;
}

void InitTun(Napi::Env env, Napi::Object exports) {
  exports.Set("seqpacketPair", Napi::Function::New(env, SeqpacketPair, "seqpacketPair"));
  exports.Set("tunOpen", Napi::Function::New(env, TunOpen, "tunOpen"));
  exports.Set("tunConfigure", Napi::Function::New(env, TunConfigure, "tunConfigure"));
  exports.Set("tunRead", Napi::Function::New(env, TunRead, "tunRead"));
  exports.Set("tunWrite", Napi::Function::New(env, TunWrite, "tunWrite"));
}

}  // namespace vxtun
