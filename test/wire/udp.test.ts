import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { parseIPv4 } from '../../src/wire/address';
import { foldChecksum, pseudoHeaderSum } from '../../src/wire/checksum';
import { WireError } from '../../src/wire/errors';
import { IPPROTO_UDP, emitIpv4 } from '../../src/wire/ipv4';
import { UDP_HEADER_LEN, UdpView, checkUdp, emitUdp, fillUdpChecksum, parseUdp, udpChecksum, udpChecksumValid } from '../../src/wire/udp';
import { OFFSETS, UDP_DATAGRAM_PACKET, VXLAN_8472_ICMP_FRAME, VXLAN_ARP_FRAME } from './fixtures';

/** What a CHECKSUM_PARTIAL packet carries before the NIC (or never) finishes it: the folded pseudo-header sum. */
function partialChecksum(src: number, dst: number, length: number): number {
  return ~foldChecksum(pseudoHeaderSum(src, dst, IPPROTO_UDP, length)) & 0xffff;
}

test('decode: the VXLAN outer UDP header', () => {
  const v = new UdpView(VXLAN_ARP_FRAME, OFFSETS.OUTER_UDP);
  assert.is(v.srcPort, 52461); // the kernel's flow-hash source port
  assert.is(v.dstPort, 4789);
  assert.is(v.length, 58);
  assert.is(v.checksum, 0x844f);
  assert.is(v.payloadOffset, OFFSETS.VXLAN);
  assert.equal(parseUdp(VXLAN_ARP_FRAME, OFFSETS.OUTER_UDP, 58), { srcPort: 52461, dstPort: 4789, payloadLength: 50 });
});

test('captured checksums are unfinished CHECKSUM_PARTIAL values (FACTS.md), and we see that', () => {
  for (const [frame, ipOff] of [
    [VXLAN_ARP_FRAME, OFFSETS.OUTER_IPV4],
    [VXLAN_8472_ICMP_FRAME, OFFSETS.OUTER_IPV4],
    [UDP_DATAGRAM_PACKET, 0],
  ] as const) {
    const stored = frame.readUInt16BE(ipOff + 26);
    const src = frame.readUInt32BE(ipOff + 12);
    const dst = frame.readUInt32BE(ipOff + 16);
    const length = frame.readUInt16BE(ipOff + 24);
    assert.is(stored, partialChecksum(src, dst, length));
    assert.not.ok(udpChecksumValid(frame, ipOff));
    assert.is(checkUdp(frame, ipOff + 20, length, src, dst), 'bad-checksum');
    const fixed = Buffer.from(frame);
    fillUdpChecksum(fixed, ipOff);
    assert.ok(udpChecksumValid(fixed, ipOff));
    assert.is(checkUdp(fixed, ipOff + 20, length, src, dst), undefined);
  }
});

test('udpChecksum of the "hi" datagram, cross-checked by hand', () => {
  // pseudo: 7f00+0001+7f00+0001+0011+000b; header: e729+0009+000b; data: 6869+0a00
  let sum = 0x7f00 + 1 + 0x7f00 + 1 + 17 + 11 + 0xe729 + 9 + 11 + 0x6869 + 0x0a00;
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  assert.is(udpChecksum(UDP_DATAGRAM_PACKET, 0), ~sum & 0xffff);
});

test('encode: emit fills the checksum given the addresses, 0 without; round trip', () => {
  const src = parseIPv4('192.0.2.1');
  const dst = parseIPv4('192.0.2.2');
  const buf = Buffer.alloc(20 + 8 + 5);
  buf.write('hello', 28);
  emitIpv4({ source: src, destination: dst, protocol: IPPROTO_UDP, payloadLength: 13, ttl: 64 }, buf, 0);
  assert.is(emitUdp({ srcPort: 40000, dstPort: 4789, payloadLength: 5 }, buf, 20), UDP_HEADER_LEN);
  assert.is(buf.readUInt16BE(26), 0);
  assert.ok(udpChecksumValid(buf, 0), 'zero means no checksum');
  emitUdp({ srcPort: 40000, dstPort: 4789, payloadLength: 5, source: src, destination: dst }, buf, 20);
  assert.is(buf.readUInt16BE(26), udpChecksum(buf, 0));
  assert.ok(udpChecksumValid(buf, 0));
  assert.equal(parseUdp(buf, 20, 13, src, dst), { srcPort: 40000, dstPort: 4789, payloadLength: 5 });
  buf[30] ^= 0x20;
  assert.throws(() => parseUdp(buf, 20, 13, src, dst), (e: unknown) => e instanceof WireError && e.problem === 'bad-checksum');
});

test('a computed checksum of 0 is sent as 0xFFFF (RFC 768)', () => {
  // Choose the payload word that makes the sum 0xFFFF.
  const src = parseIPv4('10.0.0.1');
  const dst = parseIPv4('10.0.0.2');
  const buf = Buffer.alloc(20 + 8 + 2);
  emitIpv4({ source: src, destination: dst, protocol: IPPROTO_UDP, payloadLength: 10, ttl: 64 }, buf, 0);
  emitUdp({ srcPort: 1, dstPort: 2, payloadLength: 2 }, buf, 20);
  const without = ~udpChecksum(buf, 0) & 0xffff; // folded sum with a zero payload word
  buf.writeUInt16BE(~without & 0xffff, 28);
  assert.is(udpChecksum(buf, 0), 0xffff);
  fillUdpChecksum(buf, 0);
  assert.is(buf.readUInt16BE(26), 0xffff);
  assert.ok(udpChecksumValid(buf, 0));
});

test('checkUdp table', () => {
  const u = UDP_DATAGRAM_PACKET.subarray(20); // 11 bytes, length field 11
  const withLength = (n: number): Buffer => {
    const b = Buffer.from(u);
    b.writeUInt16BE(n, 4);
    return b;
  };
  const cases: Array<[string, Buffer, number, string | undefined]> = [
    ['valid', u, 11, undefined],
    ['IP payload longer than UDP length (padding)', Buffer.concat([u, Buffer.alloc(4)]), 15, undefined],
    ['7 bytes', u, 7, 'truncated'],
    ['len beyond buffer', u, 12, 'truncated'],
    ['length field 7', withLength(7), 11, 'bad-length'],
    ['length field 0', withLength(0), 11, 'bad-length'],
    ['length field beyond IP payload', withLength(12), 11, 'bad-length'],
    ['length field 8: empty payload', withLength(8), 11, undefined],
  ];
  for (const [name, buf, len, expected] of cases) assert.is(checkUdp(buf, 0, len), expected, name);
});

test.run();
