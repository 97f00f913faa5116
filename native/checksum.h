// The Internet checksum (RFC 1071) for the offload code. Sums are taken over words loaded in native byte order and
// stored back the same way: the ones' complement sum is byte-order independent (RFC 1071 section 2(B)), so no word is
// swapped on the way. Accumulating 32-bit words in 64 bits never overflows for packets of any IPv4 size.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>

namespace vxtun {

/** Adds the bytes [p, p + n) to an unfolded sum; an odd last byte counts as the high byte of a zero-padded word. */
inline uint64_t SumBytes(const uint8_t* p, size_t n, uint64_t sum) {
  while (n >= 8) {
    uint32_t a, b;
    memcpy(&a, p, 4);
    memcpy(&b, p + 4, 4);
    sum += a;
    sum += b;
    p += 8;
    n -= 8;
  }
  if (n >= 4) {
    uint32_t a;
    memcpy(&a, p, 4);
    sum += a;
    p += 4;
    n -= 4;
  }
  if (n >= 2) {
    uint16_t a;
    memcpy(&a, p, 2);
    sum += a;
    p += 2;
    n -= 2;
  }
  if (n == 1) {
    uint8_t last[2] = {p[0], 0};
    uint16_t a;
    memcpy(&a, last, 2);
    sum += a;
  }
  return sum;
}

/** Folds an unfolded sum to 16 bits (native order, not complemented). */
inline uint16_t FoldSum(uint64_t sum) {
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<uint16_t>(sum);
}

/** Unfolded sum of the IPv4 pseudo-header; `ip` points at an IPv4 header (addresses read in place). */
inline uint64_t PseudoHeaderSum(const uint8_t* ip, uint8_t protocol, uint16_t length) {
  uint8_t tail[4] = {0, protocol, static_cast<uint8_t>(length >> 8), static_cast<uint8_t>(length)};
  return SumBytes(tail, 4, SumBytes(ip + 12, 8, 0));
}

/** Unfolded sum of the IPv6 pseudo-header (RFC 8200 8.1); `ip` points at an IPv6 header (addresses read in place). */
inline uint64_t PseudoHeaderSum6(const uint8_t* ip, uint8_t protocol, uint32_t length) {
  uint8_t tail[8] = {static_cast<uint8_t>(length >> 24), static_cast<uint8_t>(length >> 16), static_cast<uint8_t>(length >> 8),
                     static_cast<uint8_t>(length), 0, 0, 0, protocol};
  return SumBytes(tail, 8, SumBytes(ip + 8, 32, 0));
}

/** Stores a 16-bit value computed in native order (by FoldSum) into a packet's checksum field. */
inline void StoreSum(uint8_t* field, uint16_t value) { memcpy(field, &value, 2); }

inline uint16_t LoadBE16(const uint8_t* p) { return static_cast<uint16_t>(p[0] << 8 | p[1]); }
inline uint32_t LoadBE32(const uint8_t* p) {
  return static_cast<uint32_t>(p[0]) << 24 | static_cast<uint32_t>(p[1]) << 16 | static_cast<uint32_t>(p[2]) << 8 | p[3];
}
inline void StoreBE16(uint8_t* p, uint16_t v) {
  p[0] = static_cast<uint8_t>(v >> 8);
  p[1] = static_cast<uint8_t>(v);
}
inline void StoreBE32(uint8_t* p, uint32_t v) {
  p[0] = static_cast<uint8_t>(v >> 24);
  p[1] = static_cast<uint8_t>(v >> 16);
  p[2] = static_cast<uint8_t>(v >> 8);
  p[3] = static_cast<uint8_t>(v);
}

/** Recomputes the IPv4 header checksum of the header at `ip` (ihl bytes). */
inline void FillIpv4Checksum(uint8_t* ip, size_t ihl) {
  ip[10] = 0;
  ip[11] = 0;
  StoreSum(ip + 10, static_cast<uint16_t>(~FoldSum(SumBytes(ip, ihl, 0))));
}

}  // namespace vxtun
