// Real packets, as hex. Captured on this kind of machine with Linux 6.x in a throwaway namespace (vxt-wirefix):
// a kernel VXLAN device (VNI 1) over a veth underlay 192.0.2.1 -> 192.0.2.2 (dstport 4789) and -> 192.0.2.3
// (no dstport: the kernel default 8472), `ping -s 8` through them, and `ping -s 8 127.0.0.1` on lo, with
// `dumpcap -P`. Captured at the sender, so the outer UDP checksum is the unfinished CHECKSUM_PARTIAL value
// (the pseudo-header sum only; FACTS.md "checksum offload"): the tests assert exactly that.

export function hex(text: string): Buffer {
  return Buffer.from(text.replace(/\s+/g, ''), 'hex');
}

/** Ethernet / IPv4 192.0.2.1 -> 192.0.2.2 / UDP 52461 -> 4789 / VXLAN VNI 1 / Ethernet / ARP who-has 10.1.1.2 tell 10.1.1.1. */
export const VXLAN_ARP_FRAME = hex(`
  020000000002 020000000001 0800
  4500004e 16930000 4011e008 c0000201 c0000202
  cced12b5 003a844f
  08000000 00000100
  ffffffffffff 020000000101 0806
  0001 0800 06 04 0001 020000000101 0a010101 000000000000 0a010102`);

/** Ethernet / IPv4 192.0.2.1 -> 192.0.2.3 / UDP 53175 -> 8472 / VXLAN VNI 1 / Ethernet / IPv4 10.2.2.1 -> 10.2.2.2 / ICMP echo. */
export const VXLAN_8472_ICMP_FRAME = hex(`
  020000000002 020000000001 0800
  45000056 e0050000 4011168d c0000201 c0000203
  cfb72118 00428458
  08000000 00000100
  020000020202 020000000201 0800
  45000024 8d914000 40019541 0a020201 0a020202
  0800ce3e 1db00001 0001020304050607`);

/** IPv4 127.0.0.1 -> 127.0.0.1 ICMP echo request id 0x1dde seq 1, 8 data bytes (lo's zero Ethernet header removed). */
export const ICMP_ECHO_REQUEST_PACKET = hex(`
  45000024 286a4000 4001146d 7f000001 7f000001
  0800ce10 1dde0001 0001020304050607`);

/** The kernel's reply to it. */
export const ICMP_ECHO_REPLY_PACKET = hex(`
  45000024 286b0000 4001546c 7f000001 7f000001
  0000d610 1dde0001 0001020304050607`);

// From a second capture on lo: `echo hi > /dev/udp/127.0.0.1/9; echo > /dev/tcp/127.0.0.1/80` (nothing listens).
// lo also leaves transport checksums unfinished (CHECKSUM_PARTIAL): the field holds the folded pseudo-header sum.

/** IPv4 127.0.0.1 -> 127.0.0.1 / UDP 59177 -> 9 / "hi\n"; DF set. */
export const UDP_DATAGRAM_PACKET = hex(`
  4500001f 66d94000 4011d5f2 7f000001 7f000001
  e7290009 000bfe1e 68690a`);

/** The kernel's ICMP port unreachable for it: TOS 0xc0, TTL 64, quoting the whole datagram. */
export const ICMP_PORT_UNREACHABLE_PACKET = hex(`
  45c0003b 10c80000 40016b38 7f000001 7f000001
  0303a536 00000000
  4500001f 66d94000 4011d5f2 7f000001 7f000001 e7290009 000bfe1e 68690a`);

/** TCP SYN 55196 -> 80 with options (MSS 65495, SACK-permitted, timestamps, window scale 7): data offset 40. */
export const TCP_SYN_PACKET = hex(`
  4500003c 9edc4000 40069ddd 7f000001 7f000001
  d79c0050 a17e8b6c 00000000 a002ffd7 fe300000
  0204ffd7 0402080a 803eefd0 00000000 0103030a`);

/** The RST+ACK answering it (a kernel-built reply: its checksum is complete). */
export const TCP_RST_ACK_PACKET = hex(`
  45000028 00004000 40063cce 7f000001 7f000001
  0050d79c 00000000 a17e8b6d 50140000 acf50000`);

export const OFFSETS = {
  OUTER_IPV4: 14,
  OUTER_UDP: 34,
  VXLAN: 42,
  INNER_ETHERNET: 50,
  INNER_PAYLOAD: 64,
} as const;
