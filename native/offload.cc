// Offload work for a TUN opened with IFF_VNET_HDR: split the kernel's TSO super-packets into wire segments
// (tcpSegment), finish checksums it left partial (completeChecksum), and coalesce runs of received TCP segments, and
// UDP datagrams where the kernel takes UDP GSO writes (6.2+), into one super-packet per write (tunWriteCoalesced). The rules follow the kernel's GSO/GRO (and wireguard-go's
// tun/offload_linux.go, which mirrors them): per segment the IPv4 ID goes up by one, seq by the payload before it,
// FIN and PSH stay on the last segment only, CWR on the first only.
#include <errno.h>
#include <unistd.h>

#include <cstring>
#include <string>

#include "checksum.h"
#include "errors.h"
#include "exports.h"
#include "tun-io.h"

namespace vxtun {

// struct virtio_net_hdr (include/uapi/linux/virtio_net.h, whose header does not compile as C++), in native byte
// order: TUN uses the host's order unless TUNSETVNETLE/BE says otherwise.
struct VnetHdr {
  uint8_t flags;
  uint8_t gso_type;
  uint16_t hdr_len;
  uint16_t gso_size;
  uint16_t csum_start;
  uint16_t csum_offset;
};
static constexpr size_t kVnetHdrLen = sizeof(VnetHdr);
static_assert(kVnetHdrLen == 10, "virtio_net_hdr without num_buffers");
static constexpr uint8_t kVnetNeedsCsum = 1;  // VIRTIO_NET_HDR_F_NEEDS_CSUM
static constexpr uint8_t kVnetGsoTcpv4 = 1;   // VIRTIO_NET_HDR_GSO_TCPV4
static constexpr uint8_t kVnetGsoTcpv6 = 4;   // VIRTIO_NET_HDR_GSO_TCPV6 (the TUN takes it with TUN_F_TSO6)
static constexpr uint8_t kProtoTcp = 6;
static constexpr uint8_t kProtoUdp = 17;
static constexpr uint8_t kTcpFin = 0x01, kTcpPsh = 0x08, kTcpAck = 0x10, kTcpCwr = 0x80;
static constexpr size_t kMaxIpv4Packet = 65535;

// Checks that [off, off + len) lies inside a buffer of `size` bytes (64-bit sum: no wrap).
static bool InBounds(Napi::Env env, const char* what, uint64_t off, uint64_t len, size_t size) {
  if (off + len <= size) return true;
  std::string message = std::string(what) + " (offset " + std::to_string(off) + ", length " + std::to_string(len) +
                        ") lies outside its buffer of " + std::to_string(size) + " bytes";
  ThrowRangeError(env, message.c_str());
  return false;
}

// tcpSegment(slab, pktOff, pktLen, hdrLen, gsoSize, csumStart, out, outOff, prefix, prefixOff, prefixLen,
//            segLengths) -> segment count, or -1 when the packet cannot be segmented.
// hdrLen is only checked (>= the real IP + TCP header length, <= pktLen): the kernel's hdr_len may cover more than the
// headers (wireguard-go does not trust it either), so the headers' own lengths are used.
static Napi::Value TcpSegment(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Bytes slab, out, prefix;
  uint32_t pktOff, pktLen, hdrLen, gsoSize, csumStart, outOff, prefixOff, prefixLen;
  Array<uint32_t> segLengths;
  if (!ArgBytes(info, 0, "slab", slab) || !ArgUint32(info, 1, "pktOff", pktOff) ||
      !ArgUint32(info, 2, "pktLen", pktLen) || !ArgUint32(info, 3, "hdrLen", hdrLen) ||
      !ArgUint32(info, 4, "gsoSize", gsoSize) || !ArgUint32(info, 5, "csumStart", csumStart) ||
      !ArgBytes(info, 6, "out", out) || !ArgUint32(info, 7, "outOff", outOff) || !ArgBytes(info, 8, "prefix", prefix) ||
      !ArgUint32(info, 9, "prefixOff", prefixOff) || !ArgUint32(info, 10, "prefixLen", prefixLen) ||
      !ArgUint32Array(info, 11, "segLengths", segLengths)) {
    return env.Undefined();
  }
  if (!InBounds(env, "packet", pktOff, pktLen, slab.length) || !InBounds(env, "out", outOff, 0, out.length) ||
      !InBounds(env, "prefix", prefixOff, prefixLen, prefix.length)) {
    return env.Undefined();
  }
  Napi::Number fail = Napi::Number::New(env, -1);
  const uint8_t* ip = slab.data + pktOff;
  if (pktLen < 40 || (ip[0] >> 4) != 4 || ip[9] != kProtoTcp) return fail;
  size_t ihl = (ip[0] & 0x0f) * 4u;
  if (ihl < 20 || ihl != csumStart || pktLen < ihl + 20) return fail;
  size_t thl = (ip[ihl + 12] >> 4) * 4u;
  size_t headers = ihl + thl;
  if (thl < 20 || headers > pktLen || hdrLen < headers || hdrLen > pktLen) return fail;
  if (LoadBE16(ip + 2) != pktLen || gsoSize == 0) return fail;
  size_t payload = pktLen - headers;
  size_t count = payload == 0 ? 1 : (payload + gsoSize - 1) / gsoSize;
  if (count > segLengths.length) return fail;
  uint64_t total = static_cast<uint64_t>(count) * (prefixLen + headers) + payload;
  if (outOff + total > out.length) return fail;
  // The segments are written forwards from the packet's own bytes: they must not overlap.
  const uint8_t* outStart = out.data + outOff;
  if (outStart < ip + pktLen && ip < outStart + total) {
    ThrowRangeError(env, "tcpSegment: the output region overlaps the packet");
    return env.Undefined();
  }

  uint16_t id = LoadBE16(ip + 4);
  uint32_t seq = LoadBE32(ip + ihl + 4);
  uint8_t flags = ip[ihl + 13];
  uint8_t* at = out.data + outOff;
  size_t done = 0;
  for (size_t i = 0; i < count; i++) {
    size_t chunk = payload - done < gsoSize ? payload - done : gsoSize;
    if (prefixLen > 0) memcpy(at, prefix.data + prefixOff, prefixLen);
    uint8_t* segIp = at + prefixLen;
    memcpy(segIp, ip, headers);
    memcpy(segIp + headers, ip + headers + done, chunk);
    StoreBE16(segIp + 2, static_cast<uint16_t>(headers + chunk));
    StoreBE16(segIp + 4, static_cast<uint16_t>(id + i));
    FillIpv4Checksum(segIp, ihl);
    uint8_t* tcp = segIp + ihl;
    StoreBE32(tcp + 4, seq + static_cast<uint32_t>(done));
    uint8_t segFlags = flags;
    if (i + 1 < count) segFlags &= static_cast<uint8_t>(~(kTcpFin | kTcpPsh));
    if (i > 0) segFlags &= static_cast<uint8_t>(~kTcpCwr);
    tcp[13] = segFlags;
    tcp[16] = 0;
    tcp[17] = 0;
    uint16_t tcpLen = static_cast<uint16_t>(thl + chunk);
    uint64_t sum = SumBytes(tcp, tcpLen, PseudoHeaderSum(segIp, kProtoTcp, tcpLen));
    StoreSum(tcp + 16, static_cast<uint16_t>(~FoldSum(sum)));
    size_t segLen = prefixLen + headers + chunk;
    segLengths.data[i] = static_cast<uint32_t>(segLen);
    at += segLen;
    done += chunk;
  }
  return Napi::Number::New(env, static_cast<double>(count));
}

// completeChecksum(slab, off, len, csumStart, csumOffset): for VIRTIO_NET_HDR_F_NEEDS_CSUM packets. The field at
// csumStart + csumOffset holds the pseudo-header sum; the checksum covers everything from csumStart to the end.
static Napi::Value CompleteChecksum(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Bytes slab;
  uint32_t off, len, csumStart, csumOffset;
  if (!ArgBytes(info, 0, "slab", slab) || !ArgUint32(info, 1, "off", off) || !ArgUint32(info, 2, "len", len) ||
      !ArgUint32(info, 3, "csumStart", csumStart) || !ArgUint32(info, 4, "csumOffset", csumOffset)) {
    return env.Undefined();
  }
  if (!InBounds(env, "packet", off, len, slab.length)) return env.Undefined();
  if (static_cast<uint64_t>(csumStart) + csumOffset + 2 > len) {
    ThrowRangeError(env, "completeChecksum: csumStart + csumOffset + 2 exceeds the packet length");
    return env.Undefined();
  }
  uint8_t* start = slab.data + off + csumStart;
  uint16_t value = static_cast<uint16_t>(~FoldSum(SumBytes(start, len - csumStart, 0)));
  // UDP (the field 6 bytes in) sends a computed 0 as 0xFFFF: 0 means "no checksum" (RFC 768).
  if (value == 0 && csumOffset == 6) value = 0xffff;
  StoreSum(start + csumOffset, value);
  return env.Undefined();
}

// A TCP/IPv4, TCP/IPv6 or UDP/IPv4 packet that may join a coalesced super-packet, parsed once.
struct Segment {
  uint8_t* ip;
  size_t length;
  size_t l3;       // the IP header: 20 (IPv4 without options) or 40 (IPv6 without extension headers)
  size_t headers;  // l3 + the TCP or UDP header
  size_t payload;
  uint32_t seq;    // TCP only
  bool psh;        // TCP only
};

// IPv4 without options, not a fragment, of `proto`, total length matching.
static bool PlainIpv4(const uint8_t* ip, size_t length, uint8_t proto) {
  if (length < 28 || ip[0] != 0x45 || ip[9] != proto) return false;
  if (LoadBE16(ip + 2) != length) return false;
  return (ip[6] & 0x3f) == 0 && ip[7] == 0;  // no MF, no fragment offset
}

// IPv6 whose next header is `proto` (no extension headers), payload length matching.
static bool PlainIpv6(const uint8_t* ip, size_t length, uint8_t proto) {
  return length >= 60 && (ip[0] >> 4) == 6 && ip[6] == proto && LoadBE16(ip + 4) + 40u == length;
}

// A TCP packet that may be coalesced: flags ACK or ACK|PSH, a payload, and a valid TCP checksum (a coalesced packet
// is sent as CHECKSUM_PARTIAL, so the kernel would never check the members' own checksums: a corrupt one must not
// be laundered). IPv4 without options or IPv6 without extension headers, as the kernel's TCP GRO takes them.
static bool ParseTcp(uint8_t* ip, size_t length, Segment& s) {
  bool v6 = length > 0 && (ip[0] >> 4) == 6;
  if (v6 ? !PlainIpv6(ip, length, kProtoTcp) : (length < 40 || !PlainIpv4(ip, length, kProtoTcp))) return false;
  size_t l3 = v6 ? 40 : 20;
  const uint8_t* tcp = ip + l3;
  size_t thl = (tcp[12] >> 4) * 4u;
  if (thl < 20 || l3 + thl >= length) return false;  // >=: no payload, nothing to coalesce
  uint8_t flags = tcp[13];
  if (flags != kTcpAck && flags != (kTcpAck | kTcpPsh)) return false;
  uint16_t tcpLen = static_cast<uint16_t>(length - l3);
  uint64_t pseudo = v6 ? PseudoHeaderSum6(ip, kProtoTcp, tcpLen) : PseudoHeaderSum(ip, kProtoTcp, tcpLen);
  if (FoldSum(SumBytes(tcp, tcpLen, pseudo)) != 0xffff) return false;
  s.ip = ip;
  s.length = length;
  s.l3 = l3;
  s.headers = l3 + thl;
  s.payload = length - s.headers;
  s.seq = LoadBE32(tcp + 4);
  s.psh = (flags & kTcpPsh) != 0;
  return true;
}

// A UDP datagram that may be coalesced: UDP length matching, a payload, and a valid checksum or none (0: RFC 768;
// the segments then get one from the kernel, which is allowed). The same laundering rule as TCP.
static bool ParseUdp(uint8_t* ip, size_t length, Segment& s) {
  if (length <= 28 || !PlainIpv4(ip, length, kProtoUdp)) return false;
  const uint8_t* udp = ip + 20;
  uint16_t udpLen = static_cast<uint16_t>(length - 20);
  if (LoadBE16(udp + 4) != udpLen) return false;
  if (LoadBE16(udp + 6) != 0 && FoldSum(SumBytes(udp, udpLen, PseudoHeaderSum(ip, kProtoUdp, udpLen))) != 0xffff) {
    return false;
  }
  s.ip = ip;
  s.length = length;
  s.l3 = 20;
  s.headers = 28;
  s.payload = length - 28;
  s.seq = 0;
  s.psh = false;
  return true;
}

// The IPv4 fields every member of a run must share with its head (ToS, DF, TTL, addresses), then the ports.
static bool SameIpv4AndPorts(const Segment& head, const Segment& next) {
  const uint8_t* a = head.ip;
  const uint8_t* b = next.ip;
  if (a[1] != b[1] || (a[6] >> 5) != (b[6] >> 5) || a[8] != b[8]) return false;  // ToS, DF, TTL
  if (memcmp(a + 12, b + 12, 8) != 0) return false;                               // addresses
  return memcmp(a + 20, b + 20, 4) == 0;                                          // ports
}

// The IPv6 fields every member of a run must share with its head (traffic class, flow label, hop limit, addresses),
// then the ports (the kernel's ipv6_gro_receive compares the same).
static bool SameIpv6AndPorts(const Segment& head, const Segment& next) {
  const uint8_t* a = head.ip;
  const uint8_t* b = next.ip;
  if (memcmp(a, b, 4) != 0 || a[7] != b[7]) return false;  // version, traffic class, flow label; hop limit
  if (memcmp(a + 8, b + 8, 32) != 0) return false;         // addresses
  return memcmp(a + 40, b + 40, 4) == 0;                   // ports
}

// Whether `next` continues the TCP run headed by `head` (same flow, same header fields the kernel's GRO compares).
static bool SameTcpFlow(const Segment& head, const Segment& next) {
  if (head.l3 != next.l3 || head.headers != next.headers) return false;
  if (!(head.l3 == 40 ? SameIpv6AndPorts(head, next) : SameIpv4AndPorts(head, next))) return false;
  const size_t tcp = head.l3;
  if (memcmp(head.ip + tcp + 8, next.ip + tcp + 8, 4) != 0) return false;                      // ack
  return memcmp(head.ip + tcp + 20, next.ip + tcp + 20, head.headers - tcp - 20) == 0;         // TCP options (timestamps)
}

// Flags of tunWriteCoalesced.
static constexpr uint32_t kCoalesceUdp = 1;  // the kernel takes VIRTIO_NET_HDR_GSO_UDP_L4 writes (tunOpen's uso)
static constexpr uint8_t kVnetGsoUdpL4 = 5;  // VIRTIO_NET_HDR_GSO_UDP_L4
// Datagrams per UDP super-packet at most: UDP_MAX_SEGMENTS was 64 before 6.? raised it to 128 (include/linux/udp.h);
// virtio_net_hdr_to_skb refuses more than the running kernel's limit.
static constexpr int kMaxUdpSegments = 64;

// How many packets from index i on form one run (1: alone), for TCP (tcp = true) or UDP; `head` is packet i parsed.
static int RunLength(const Bytes& slab, const Array<uint32_t>& offsets, const Array<uint32_t>& lengths, int i,
                     int count, const Segment& head, bool tcp, size_t& total) {
  int members = 1;
  total = head.length;
  if (tcp && head.psh) return 1;
  uint32_t nextSeq = head.seq + static_cast<uint32_t>(head.payload);
  while (i + members < count) {
    if (!tcp && members == kMaxUdpSegments) break;
    int j = i + members;
    Segment next;
    uint8_t* ip = slab.data + offsets.data[j];
    if (tcp) {
      if (!ParseTcp(ip, lengths.data[j], next) || !SameTcpFlow(head, next) || next.seq != nextSeq) break;
    } else {
      if (!ParseUdp(ip, lengths.data[j], next) || !SameIpv4AndPorts(head, next)) break;
    }
    if (next.payload > head.payload || total + next.payload > kMaxIpv4Packet) break;
    members++;
    total += next.payload;
    nextSeq += static_cast<uint32_t>(next.payload);
    if (next.psh || next.payload < head.payload) break;  // nothing may follow a short or PSH segment
  }
  return members;
}

// tunWriteCoalesced(fd, slab, offsets, lengths, count, scratch?, flags?, ring?) -> accepted. Runs of adjacent TCP
// segments of one flow (and, with flags & 1, of UDP datagrams of one flow) become one GSO super-packet each: the
// first packet's headers are rewritten in place (lengths, checksums, PSH) with the virtio header in its headroom, and
// the members' payloads follow by gather (writev), so nothing is copied. Everything else is written alone with a
// zeroed virtio header. scratch is not used any more (kept for callers of the old copying version).
static Napi::Value TunWriteCoalesced(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int32_t fd, count;
  uint32_t flags = 0;
  int ring;
  Bytes slab;
  Array<uint32_t> offsets, lengths;
  if (!ArgInt(info, 0, "fd", fd) || !ArgBytes(info, 1, "slab", slab) || !ArgUint32Array(info, 2, "offsets", offsets) ||
      !ArgUint32Array(info, 3, "lengths", lengths) || !ArgInt(info, 4, "count", count) ||
      !CheckSlots(env, slab, offsets, lengths, count)) {
    return env.Undefined();
  }
  if (info.Length() > 6 && !info[6].IsUndefined() && !ArgUint32(info, 6, "flags", flags)) return env.Undefined();
  if (!ArgRing(info, 7, ring)) return env.Undefined();
  for (int i = 0; i < count; i++) {
    if (offsets.data[i] < kVnetHdrLen) {
      std::string message = "packet " + std::to_string(i) + " has fewer than 10 bytes of headroom for the virtio header";
      ThrowRangeError(env, message.c_str());
      return env.Undefined();
    }
  }
  static WritePlan plan;
  plan.Clear();
  int i = 0;
  while (i < count) {
    uint8_t* ip = slab.data + offsets.data[i];
    size_t length = lengths.data[i];
    uint8_t* hdr = ip - kVnetHdrLen;
    Segment head;
    bool tcp = ParseTcp(ip, length, head);
    bool udp = !tcp && (flags & kCoalesceUdp) != 0 && ParseUdp(ip, length, head);
    size_t total = length;
    int members = tcp || udp ? RunLength(slab, offsets, lengths, i, count, head, tcp, total) : 1;
    plan.Begin(static_cast<uint32_t>(members));
    if (members == 1) {
      memset(hdr, 0, kVnetHdrLen);
      plan.Add(hdr, length + kVnetHdrLen);
      i++;
      continue;
    }
    VnetHdr vnet;
    memset(&vnet, 0, sizeof vnet);
    vnet.flags = kVnetNeedsCsum;
    const bool v6 = head.l3 == 40;
    vnet.gso_type = tcp ? (v6 ? kVnetGsoTcpv6 : kVnetGsoTcpv4) : kVnetGsoUdpL4;
    vnet.hdr_len = static_cast<uint16_t>(head.headers);
    vnet.gso_size = static_cast<uint16_t>(head.payload);
    vnet.csum_start = static_cast<uint16_t>(head.l3);
    vnet.csum_offset = tcp ? 16 : 6;
    memcpy(hdr, &vnet, kVnetHdrLen);
    plan.Add(hdr, length + kVnetHdrLen);
    bool psh = false;
    for (int k = 1; k < members; k++) {
      uint8_t* member = slab.data + offsets.data[i + k];
      size_t memberLen = lengths.data[i + k];
      plan.Add(member + head.headers, memberLen - head.headers);
      if (tcp) psh = (member[head.l3 + 13] & kTcpPsh) != 0;
    }
    uint16_t l4Len = static_cast<uint16_t>(total - head.l3);
    if (v6) {
      StoreBE16(ip + 4, l4Len);  // payload length; IPv6 has no header checksum
    } else {
      StoreBE16(ip + 2, static_cast<uint16_t>(total));
      FillIpv4Checksum(ip, 20);
    }
    if (tcp) {
      uint8_t* th = ip + head.l3;
      if (psh) th[13] |= kTcpPsh;
      uint64_t pseudo = v6 ? PseudoHeaderSum6(ip, kProtoTcp, l4Len) : PseudoHeaderSum(ip, kProtoTcp, l4Len);
      StoreSum(th + 16, FoldSum(pseudo));  // partial: not complemented
    } else {
      // The kernel's UDP GSO rewrites the length per segment and adjusts this sum by the difference
      // (__udp_gso_segment in net/ipv4/udp_offload.c), as for a socket's own UDP_SEGMENT sends.
      StoreBE16(ip + 24, l4Len);
      StoreSum(ip + 26, FoldSum(PseudoHeaderSum(ip, kProtoUdp, l4Len)));
    }
    i += members;
  }
  int fatal = 0;
  int accepted = ring == kNoRing ? WritePlanSyscalls(fd, plan, &fatal) : WritePlanUring(ring, fd, plan, &fatal);
  if (accepted < 0) {
    ThrowSystemError(env, fatal, "write");
    return env.Undefined();
  }
  return Napi::Number::New(env, accepted);
}

void InitOffload(Napi::Env env, Napi::Object exports) {
  exports.Set("tcpSegment", Napi::Function::New(env, TcpSegment, "tcpSegment"));
  exports.Set("completeChecksum", Napi::Function::New(env, CompleteChecksum, "completeChecksum"));
  exports.Set("tunWriteCoalesced", Napi::Function::New(env, TunWriteCoalesced, "tunWriteCoalesced"));
}

}  // namespace vxtun
