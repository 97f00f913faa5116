// The headers of one segment of a TCP/IPv4 super-packet (TSO), written apart from its payload so that a sender can
// hand the kernel [headers, payload slice] as two iovecs and never copy the payload (rawSendSegments). The rules are
// the kernel's GSO (net/ipv4/tcp_offload.c tcp_gso_segment, af_inet.c inet_gso_segment), as offload.cc's tcpSegment
// applies them: per segment the IPv4 ID goes up by one, seq by the payload before it, FIN and PSH stay on the last
// segment only, CWR on the first only; both checksums are complete.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "checksum.h"

namespace vxtun {

struct SuperPacket {
  const uint8_t* ip;
  size_t ihl;       // IPv4 header bytes
  size_t tcpLen;    // TCP header bytes
  size_t headers;   // ihl + tcpLen: what every segment repeats
  size_t payload;   // bytes after the headers
  size_t gsoSize;   // payload bytes per segment (the last may carry fewer)
  size_t count;     // segments
  uint16_t id;
  uint32_t seq;
  uint8_t flags;
};

/**
 * Checks the super-packet at ip[0, pktLen) as TSO hands it over (virtio_net_hdr hdr_len, gso_size, csum_start) and
 * describes it; false when it cannot be segmented (not IPv4/TCP, lengths that disagree, gso_size 0). hdr_len is only
 * checked (>= the real headers, <= pktLen): the kernel's may cover more than the headers, so theirs are used.
 */
inline bool ParseSuperPacket(const uint8_t* ip, size_t pktLen, size_t hdrLen, size_t gsoSize, size_t csumStart, SuperPacket& s) {
  if (pktLen < 40 || (ip[0] >> 4) != 4 || ip[9] != 6) return false;
  size_t ihl = (ip[0] & 0x0f) * 4u;
  if (ihl < 20 || ihl != csumStart || pktLen < ihl + 20) return false;
  size_t thl = (ip[ihl + 12] >> 4) * 4u;
  size_t headers = ihl + thl;
  if (thl < 20 || headers > pktLen || hdrLen < headers || hdrLen > pktLen) return false;
  if (LoadBE16(ip + 2) != pktLen || gsoSize == 0) return false;
  s.ip = ip;
  s.ihl = ihl;
  s.tcpLen = thl;
  s.headers = headers;
  s.payload = pktLen - headers;
  s.gsoSize = gsoSize;
  s.count = s.payload == 0 ? 1 : (s.payload + gsoSize - 1) / gsoSize;
  s.id = LoadBE16(ip + 4);
  s.seq = LoadBE32(ip + ihl + 4);
  s.flags = ip[ihl + 13];
  return true;
}

/**
 * Writes segment i's IPv4 + TCP headers (s.headers bytes) at `out`; its payload is the `chunk` bytes at `data`, which
 * are only read (for the TCP checksum). `done` is the payload carried by the segments before it.
 */
inline void WriteSegmentHeaders(const SuperPacket& s, size_t i, size_t done, size_t chunk, const uint8_t* data, uint8_t* out) {
  memcpy(out, s.ip, s.headers);
  StoreBE16(out + 2, static_cast<uint16_t>(s.headers + chunk));
  StoreBE16(out + 4, static_cast<uint16_t>(s.id + i));
  FillIpv4Checksum(out, s.ihl);
  uint8_t* tcp = out + s.ihl;
  StoreBE32(tcp + 4, s.seq + static_cast<uint32_t>(done));
  uint8_t flags = s.flags;
  if (i + 1 < s.count) flags &= static_cast<uint8_t>(~(0x01 | 0x08));  // FIN, PSH: the last segment only
  if (i > 0) flags &= static_cast<uint8_t>(~0x80);                       // CWR: the first only
  tcp[13] = flags;
  tcp[16] = 0;
  tcp[17] = 0;
  uint16_t tcpLen = static_cast<uint16_t>(s.tcpLen + chunk);
  uint64_t sum = SumBytes(tcp, s.tcpLen, PseudoHeaderSum(out, 6, tcpLen));
  sum = SumBytes(data, chunk, sum);
  // SumBytes pads an odd tail, and the header is an even length: the two partial sums add up as one (RFC 1071).
  StoreSum(tcp + 16, static_cast<uint16_t>(~FoldSum(sum)));
}

}  // namespace vxtun
