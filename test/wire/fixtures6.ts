// Real IPv6 frames, as hex. Captured on this kind of machine with Linux 6.x in two throwaway namespaces joined by a
// veth (vxtcapa 02:00:00:00:00:0a 2001:db8::a/64, vxtcapb 02:00:00:00:00:0b 2001:db8::b/64, `nodad`), with
// tcpdump on vxtcapa during `ping -6 -c1 -s 8 -p 0001020304050607 2001:db8::b` and `echo hi > /dev/udp/2001:db8::b/9`.
import { hex } from './fixtures';

/** MLDv2 report from :: to ff02::16: a hop-by-hop header (Router Alert, RFC 2711) before ICMPv6 type 143. */
export const MLD_REPORT_FRAME = hex(`
  333300000016 02000000000a 86dd
  60000000 0024 00 01 00000000000000000000000000000000 ff020000000000000000000000000016
  3a00 0502 0000 0100
  8f006f80 00000001 04000000 ff0200000000000000000001ff00000a`);

/** DAD probe: NS from :: to ff02::1:ff00:a for fe80::ff:fe00:a, with a nonce option (type 14), no SLLA. */
export const NS_DAD_FRAME = hex(`
  3333ff00000a 02000000000a 86dd
  60000000 0020 3a ff 00000000000000000000000000000000 ff0200000000000000000001ff00000a
  87002072 00000000 fe80000000000000000000fffe00000a 0e01ec9abf0da2ef`);

/** NS from 2001:db8::a to ff02::1:ff00:b for 2001:db8::b, SLLA 02:00:00:00:00:0a. */
export const NS_FRAME = hex(`
  3333ff00000b 02000000000a 86dd
  60000000 0020 3a ff 20010db800000000000000000000000a ff0200000000000000000001ff00000b
  87001c03 00000000 20010db800000000000000000000000b 0101 02000000000a`);

/** The kernel's NA for it: 2001:db8::b -> 2001:db8::a, flags S and O, TLLA 02:00:00:00:00:0b. */
export const NA_FRAME = hex(`
  02000000000a 02000000000b 86dd
  60000000 0020 3a ff 20010db800000000000000000000000b 20010db800000000000000000000000a
  88008a4d 60000000 20010db800000000000000000000000b 0201 02000000000b`);

/** Echo request 2001:db8::a -> 2001:db8::b, id 0x50d4 seq 1, 8 bytes, flow label 0xd086a. */
export const ECHO_REQUEST6_FRAME = hex(`
  02000000000b 02000000000a 86dd
  600d086a 0010 3a 40 20010db800000000000000000000000a 20010db800000000000000000000000b
  8000c748 50d40001 0001020304050607`);

/** UDP 2001:db8::a 33281 -> 2001:db8::b 9, "hi\\n" (checksum as sent). */
export const UDP6_FRAME = hex(`
  02000000000b 02000000000a 86dd
  6008ca10 000b 11 40 20010db800000000000000000000000a 20010db800000000000000000000000b
  82010009 000b5ba3 68690a`);

/** The kernel's port unreachable for it: hop limit 64, quoting the whole datagram. */
export const PORT_UNREACHABLE6_FRAME = hex(`
  02000000000a 02000000000b 86dd
  600a1269 003b 3a 40 20010db800000000000000000000000b 20010db800000000000000000000000a
  0104bbf1 00000000
  6008ca10 000b 11 40 20010db800000000000000000000000a 20010db800000000000000000000000b 82010009 000b5ba3 68690a`);

/** The IPv6 packet inside an Ethernet frame (the frames above all have 14-byte headers). */
export function ip6Of(frame: Buffer): Buffer {
  return frame.subarray(14);
}
