import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { parseMac } from '../../src/wire/address';
import { formatIPv6, parseIPv6 } from '../../src/wire/address6';
import { WireError } from '../../src/wire/errors';
import {
  ICMPV6_DEST_UNREACHABLE,
  ICMPV6_ECHO_REPLY,
  ICMPV6_ECHO_REQUEST,
  ICMPV6_ERROR_MAX_QUOTE,
  ICMPV6_NEIGHBOR_ADVERTISEMENT,
  ICMPV6_NEIGHBOR_SOLICITATION,
  ICMPV6_NO_ROUTE,
  ICMPV6_PACKET_TOO_BIG,
  ICMPV6_PORT_UNREACHABLE,
  NA_FLAG_OVERRIDE,
  NA_FLAG_SOLICITED,
  Icmpv6View,
  answerNeighborSolicitation,
  checkIcmpv6,
  checkNeighborSolicitation,
  emitIcmpv6,
  emitIcmpv6Error,
  icmpv6Checksum,
  icmpv6ErrorAllowed,
  parseIcmpv6,
} from '../../src/wire/icmpv6';
import { IPPROTO_ICMPV6, IPPROTO_UDP6, IPV6_HEADER_LEN, IPV6_MIN_MTU, checkIpv6, emitIpv6, parseIpv6 } from '../../src/wire/ipv6';
import { ECHO_REQUEST6_FRAME, MLD_REPORT_FRAME, NA_FRAME, NS_DAD_FRAME, NS_FRAME, PORT_UNREACHABLE6_FRAME, UDP6_FRAME, ip6Of } from './fixtures6';

test('checksum with the pseudo-header: every kernel ICMPv6 message checks, and recomputes to the stored value', () => {
  for (const [name, frame] of Object.entries({ ECHO_REQUEST6_FRAME, NS_FRAME, NS_DAD_FRAME, NA_FRAME, PORT_UNREACHABLE6_FRAME })) {
    const p = ip6Of(frame);
    const len = p.readUInt16BE(4);
    assert.is(checkIcmpv6(p, 0, 40, len), undefined, name);
    assert.is(icmpv6Checksum(p, 0, 40, len), p.readUInt16BE(42), name);
  }
  const bad = Buffer.from(ip6Of(ECHO_REQUEST6_FRAME));
  bad[39] ^= 1; // the destination address: only the pseudo-header covers it
  assert.is(checkIcmpv6(bad, 0, 40, 16), 'bad-checksum');
  assert.is(checkIcmpv6(bad, 0, 40, 7), 'truncated');
  assert.is(checkIcmpv6(bad, 0, 40, 100), 'truncated');
});

test('decode: echo, port unreachable, NS and NA of the kernel', () => {
  assert.equal(parseIcmpv6(ip6Of(ECHO_REQUEST6_FRAME), 0, 40, 16), { type: ICMPV6_ECHO_REQUEST, code: 0, identifier: 0x50d4, sequence: 1, payloadLength: 8 });
  const pu = ip6Of(PORT_UNREACHABLE6_FRAME);
  assert.equal(parseIcmpv6(pu, 0, 40, 59), { type: ICMPV6_DEST_UNREACHABLE, code: ICMPV6_PORT_UNREACHABLE, payloadLength: 51 });
  assert.is(parseIpv6(pu, 48).nextHeader, IPPROTO_UDP6, 'the quote is the original packet');
  assert.equal(parseIcmpv6(ip6Of(NS_FRAME), 0, 40, 32), {
    type: ICMPV6_NEIGHBOR_SOLICITATION,
    code: 0,
    target: parseIPv6('2001:db8::b'),
    linkLayer: parseMac('02:00:00:00:00:0a'),
    payloadLength: 24,
  });
  assert.equal(parseIcmpv6(ip6Of(NA_FRAME), 0, 40, 32), {
    type: ICMPV6_NEIGHBOR_ADVERTISEMENT,
    code: 0,
    target: parseIPv6('2001:db8::b'),
    flags: NA_FLAG_SOLICITED | NA_FLAG_OVERRIDE,
    linkLayer: parseMac('02:00:00:00:00:0b'),
    payloadLength: 24,
  });
  try {
    parseIcmpv6(ip6Of(NA_FRAME), 0, 40, 31);
    assert.unreachable();
  } catch (e) {
    assert.instance(e, WireError);
  }
});

test('encode: the echo reply built from the request matches the kernel reply header', () => {
  const p = Buffer.from(ip6Of(ECHO_REQUEST6_FRAME));
  const repr = parseIpv6(p);
  emitIpv6({ ...repr, source: repr.destination, destination: repr.source, flowLabel: 0xcbf95 }, p, 0);
  emitIcmpv6({ type: ICMPV6_ECHO_REPLY, code: 0, identifier: 0x50d4, sequence: 1, payloadLength: 8 }, p, 0, 40);
  assert.is(p.subarray(40).toString('hex'), '8100c64850d400010001020304050607', 'kernel reply: type 129, checksum 0xc648');
});

test('Packet Too Big: MTU field, quote capped so the reply is 1280 bytes, checksum valid, addresses swapped', () => {
  const big = Buffer.alloc(2000);
  emitIpv6({ source: parseIPv6('fd00:10:244:1::5'), destination: parseIPv6('fd00:10:244:2::5'), nextHeader: IPPROTO_UDP6, payloadLength: 1460, hopLimit: 64 }, big, 100);
  const out = Buffer.alloc(1500);
  const from = Buffer.alloc(16);
  from.writeUInt32BE(0xfd000010, 0);
  const n = emitIcmpv6Error(out, 0, ICMPV6_PACKET_TOO_BIG, 0, 1430, from, 0, big, 100, 1500);
  assert.is(n, IPV6_MIN_MTU);
  assert.is(checkIpv6(out, 0, n), undefined);
  const ip = parseIpv6(out);
  assert.is(formatIPv6(ip.destination), 'fd00:10:244:1::5');
  assert.is(formatIPv6(ip.source), 'fd00:10::');
  assert.is(ip.nextHeader, IPPROTO_ICMPV6);
  assert.is(ip.hopLimit, 64);
  assert.equal(parseIcmpv6(out, 0, 40, n - 40), { type: ICMPV6_PACKET_TOO_BIG, code: 0, mtu: 1430, payloadLength: ICMPV6_ERROR_MAX_QUOTE });
  assert.equal(out.subarray(48, 48 + 40), big.subarray(100, 140), 'the quote starts with the original header');
});

test('errors in place: the headroom in front of the original holds the reply, the quote does not move', () => {
  const slab = Buffer.alloc(400);
  const off = 200;
  const udp = ip6Of(UDP6_FRAME);
  udp.copy(slab, off);
  const from = Buffer.alloc(16);
  const n = emitIcmpv6Error(slab, off - 48, ICMPV6_DEST_UNREACHABLE, ICMPV6_NO_ROUTE, 0, from, 0, slab, off, udp.length);
  assert.is(n, 48 + udp.length);
  assert.is(formatIPv6(parseIpv6(slab, off - 48).destination), '2001:db8::a');
  assert.equal(parseIcmpv6(slab, off - 48, off - 8, n - 40), { type: ICMPV6_DEST_UNREACHABLE, code: ICMPV6_NO_ROUTE, payloadLength: udp.length });
  assert.equal(slab.subarray(off, off + udp.length), udp);
});

test('the kernel port unreachable is what emitIcmpv6Error writes for the same datagram (flow label aside)', () => {
  const udp = ip6Of(UDP6_FRAME);
  const kernel = ip6Of(PORT_UNREACHABLE6_FRAME);
  const out = Buffer.alloc(200);
  const n = emitIcmpv6Error(out, 0, ICMPV6_DEST_UNREACHABLE, ICMPV6_PORT_UNREACHABLE, 0, kernel, 8, udp, 0, udp.length);
  const want = Buffer.from(kernel);
  want.writeUInt32BE(0x60000000, 0);
  assert.is(out.subarray(0, n).toString('hex'), want.toString('hex'));
});

test('RFC 4443 2.4 (e): no error about an error, a multicast destination (PTB excepted) or a non-unique source', () => {
  const udp = Buffer.from(ip6Of(UDP6_FRAME));
  assert.ok(icmpv6ErrorAllowed(udp, 0, ICMPV6_DEST_UNREACHABLE));
  assert.ok(icmpv6ErrorAllowed(ip6Of(ECHO_REQUEST6_FRAME), 0, ICMPV6_DEST_UNREACHABLE), 'an echo request is informational');
  assert.not.ok(icmpv6ErrorAllowed(ip6Of(PORT_UNREACHABLE6_FRAME), 0, ICMPV6_PACKET_TOO_BIG), 'an error');
  const mcast = Buffer.from(udp);
  mcast.writeUInt32BE(0xff020000, 24);
  assert.not.ok(icmpv6ErrorAllowed(mcast, 0, ICMPV6_DEST_UNREACHABLE), 'multicast destination');
  assert.ok(icmpv6ErrorAllowed(mcast, 0, ICMPV6_PACKET_TOO_BIG), 'PTB about a multicast packet is allowed (e.3)');
  const msrc = Buffer.from(udp);
  msrc.writeUInt32BE(0xff020000, 8);
  assert.not.ok(icmpv6ErrorAllowed(msrc, 0, ICMPV6_PACKET_TOO_BIG), 'multicast source');
  assert.not.ok(icmpv6ErrorAllowed(ip6Of(MLD_REPORT_FRAME), 0, ICMPV6_PACKET_TOO_BIG), 'unspecified source (and multicast destination)');
  const unspec = Buffer.from(udp);
  unspec.fill(0, 8, 24);
  assert.not.ok(icmpv6ErrorAllowed(unspec, 0, ICMPV6_PACKET_TOO_BIG), 'unspecified source');
  const badChain = Buffer.from(udp);
  badChain[6] = 60; // destination options with a length running past the 11-byte payload
  badChain[41] = 5;
  assert.not.ok(icmpv6ErrorAllowed(badChain, 0, ICMPV6_PACKET_TOO_BIG), 'a chain we cannot walk');
});

test('NS checks (RFC 4861 7.1.1) and the NA answer equals the kernel NA byte for byte', () => {
  const ns = Buffer.from(ip6Of(NS_FRAME));
  assert.is(checkNeighborSolicitation(ns, 0, 40, 32), 40 + 24 + 2, 'offset of the source link-layer MAC');
  const dad = ip6Of(NS_DAD_FRAME);
  assert.is(checkNeighborSolicitation(dad, 0, 40, 32), -1, 'DAD: nonce option, no SLLA');
  const hop = Buffer.from(ns);
  hop[7] = 64;
  assert.is(checkNeighborSolicitation(hop, 0, 40, 32), 'bad-hop-limit');
  assert.is(checkNeighborSolicitation(ns, 0, 40, 23), 'truncated');
  const sum = Buffer.from(ns);
  sum[60] ^= 1;
  assert.is(checkNeighborSolicitation(sum, 0, 40, 32), 'bad-checksum');
  const zeroOpt = Buffer.from(ns);
  zeroOpt[65] = 0;
  zeroOpt.writeUInt16BE(0, 42);
  zeroOpt.writeUInt16BE(icmpv6Checksum(zeroOpt, 0, 40, 32), 42);
  assert.is(checkNeighborSolicitation(zeroOpt, 0, 40, 32), 'bad-option', 'an option of length 0');
  const mtarget = Buffer.from(ns);
  mtarget[48] = 0xff;
  mtarget.writeUInt16BE(0, 42);
  mtarget.writeUInt16BE(icmpv6Checksum(mtarget, 0, 40, 32), 42);
  assert.is(checkNeighborSolicitation(mtarget, 0, 40, 32), 'multicast-target');

  const n = answerNeighborSolicitation(ns, 0, parseMac('02:00:00:00:00:0b'), true);
  assert.is(n, 72);
  assert.is(ns.subarray(0, n).toString('hex'), ip6Of(NA_FRAME).toString('hex'));
  assert.equal(new Icmpv6View(ns, 40).naFlags, NA_FLAG_SOLICITED | NA_FLAG_OVERRIDE);
});

test('NA for a DAD probe goes to all nodes without the S flag', () => {
  const dad = Buffer.from(ip6Of(NS_DAD_FRAME));
  const n = answerNeighborSolicitation(dad, 0, parseMac('02:00:00:00:00:0a'), true);
  const ip = parseIpv6(dad, 0, n);
  assert.is(formatIPv6(ip.destination), 'ff02::1');
  assert.is(formatIPv6(ip.source), 'fe80::ff:fe00:a');
  assert.is(ip.hopLimit, 255);
  const na = parseIcmpv6(dad, 0, 40, n - 40);
  assert.is(na.flags, NA_FLAG_OVERRIDE);
  assert.is(na.linkLayer, parseMac('02:00:00:00:00:0a'));
});

test('constants', () => {
  assert.equal([ICMPV6_DEST_UNREACHABLE, ICMPV6_PACKET_TOO_BIG, ICMPV6_ECHO_REQUEST, ICMPV6_NEIGHBOR_SOLICITATION], [1, 2, 128, 135]);
  assert.is(IPV6_HEADER_LEN + 8 + ICMPV6_ERROR_MAX_QUOTE, 1280);
  assert.is(IPPROTO_ICMPV6, 58);
});

test.run();
