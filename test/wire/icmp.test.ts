import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { parseIPv4 } from '../../src/wire/address';
import { WireError } from '../../src/wire/errors';
import {
  ICMP_DEST_UNREACHABLE,
  ICMP_ECHO_REPLY,
  ICMP_ECHO_REQUEST,
  ICMP_ERROR_MAX_LEN,
  ICMP_FRAG_NEEDED,
  ICMP_HEADER_LEN,
  ICMP_HOST_UNREACHABLE,
  ICMP_NET_UNREACHABLE,
  ICMP_PORT_UNREACHABLE,
  ICMP_PROTOCOL_UNREACHABLE,
  IcmpView,
  checkIcmp,
  emitIcmp,
  emitIcmpUnreachable,
  icmpErrorAllowed,
  parseIcmp,
} from '../../src/wire/icmp';
import { IPPROTO_ICMP, IPPROTO_UDP, Ipv4View, checkIpv4, emitIpv4, parseIpv4 } from '../../src/wire/ipv4';
import { emitUdp } from '../../src/wire/udp';
import { ICMP_ECHO_REPLY_PACKET, ICMP_ECHO_REQUEST_PACKET, ICMP_PORT_UNREACHABLE_PACKET, UDP_DATAGRAM_PACKET } from './fixtures';

test('constants', () => {
  assert.equal([ICMP_ECHO_REPLY, ICMP_DEST_UNREACHABLE, ICMP_ECHO_REQUEST], [0, 3, 8]);
  assert.equal(
    [ICMP_NET_UNREACHABLE, ICMP_HOST_UNREACHABLE, ICMP_PROTOCOL_UNREACHABLE, ICMP_PORT_UNREACHABLE, ICMP_FRAG_NEEDED],
    [0, 1, 2, 3, 4],
  );
});

test('decode: real echo request and reply', () => {
  const v = new IcmpView(ICMP_ECHO_REQUEST_PACKET, 20);
  assert.is(v.type, ICMP_ECHO_REQUEST);
  assert.is(v.code, 0);
  assert.is(v.checksum, 0xce10);
  assert.is(v.identifier, 0x1dde);
  assert.is(v.sequence, 1);
  assert.is(v.payloadOffset, 28);
  assert.ok(v.checksumValid(16));
  assert.is(v.computeChecksum(16), 0xce10);
  assert.equal(parseIcmp(ICMP_ECHO_REPLY_PACKET, 20), {
    type: ICMP_ECHO_REPLY,
    code: 0,
    identifier: 0x1dde,
    sequence: 1,
    payloadLength: 8,
  });
});

test('decode: the kernel port unreachable', () => {
  const r = parseIcmp(ICMP_PORT_UNREACHABLE_PACKET, 20);
  assert.equal(r, { type: ICMP_DEST_UNREACHABLE, code: ICMP_PORT_UNREACHABLE, payloadLength: 31 });
  assert.equal(parseIpv4(ICMP_PORT_UNREACHABLE_PACKET, 28).protocol, IPPROTO_UDP, 'the quote is the original header');
});

test('encode: turning the request into the reply in place gives the kernel reply', () => {
  const buf = Buffer.from(ICMP_ECHO_REQUEST_PACKET);
  const request = parseIcmp(buf, 20);
  assert.is(emitIcmp({ ...request, type: ICMP_ECHO_REPLY }, buf, 20), ICMP_HEADER_LEN);
  assert.equal(buf.subarray(20), ICMP_ECHO_REPLY_PACKET.subarray(20));
});

test('encode: frag-needed carries the next-hop MTU in bytes 6-7; round trip', () => {
  const buf = Buffer.alloc(8 + 28);
  const repr = { type: ICMP_DEST_UNREACHABLE, code: ICMP_FRAG_NEEDED, nextHopMtu: 1450, payloadLength: 28 };
  emitIcmp(repr, buf, 0);
  assert.is(buf.readUInt32BE(4), 1450);
  assert.is(new IcmpView(buf).nextHopMtu, 1450);
  assert.equal(parseIcmp(buf), repr);
});

test('emitIcmpUnreachable equals the kernel port unreachable (but for the IP identification)', () => {
  const out = Buffer.alloc(600, 0xee);
  const n = emitIcmpUnreachable(out, 10, ICMP_PORT_UNREACHABLE, parseIPv4('127.0.0.1'), UDP_DATAGRAM_PACKET, 0, UDP_DATAGRAM_PACKET.length);
  assert.is(n, ICMP_PORT_UNREACHABLE_PACKET.length);
  const ours = out.subarray(10, 10 + n);
  assert.is(checkIpv4(ours, 0, n), undefined);
  assert.is(checkIcmp(ours, 20, n - 20), undefined);
  const ip = new Ipv4View(ours, 0);
  assert.is(ip.identification, 0);
  ip.identification = ICMP_PORT_UNREACHABLE_PACKET.readUInt16BE(4);
  ip.fillChecksum();
  assert.equal(ours, ICMP_PORT_UNREACHABLE_PACKET);
  assert.is(out[9], 0xee);
  assert.is(out[10 + n], 0xee, 'nothing written past the reply');
});

function bigUdpPacket(totalLength: number, at = 0, buf = Buffer.alloc(at + totalLength)): Buffer {
  for (let i = 0; i < totalLength; i++) buf[at + i] = i & 0xff;
  const payload = totalLength - 28;
  emitIpv4({ source: parseIPv4('10.244.1.5'), destination: parseIPv4('10.244.9.9'), protocol: IPPROTO_UDP, payloadLength: payload + 8, ttl: 63, dontFragment: true }, buf, at);
  emitUdp({ srcPort: 5000, dstPort: 6000, payloadLength: payload }, buf, at + 20);
  return buf;
}

test('emitIcmpUnreachable: frag-needed for a 1500-byte packet is cut to 576 bytes, MTU included', () => {
  const original = bigUdpPacket(1500);
  const out = Buffer.alloc(2048);
  const from = parseIPv4('10.244.1.1');
  const n = emitIcmpUnreachable(out, 0, ICMP_FRAG_NEEDED, from, original, 0, 1500, 1450);
  assert.is(n, ICMP_ERROR_MAX_LEN);
  assert.equal(parseIpv4(out, 0, n), {
    source: from,
    destination: parseIPv4('10.244.1.5'),
    protocol: IPPROTO_ICMP,
    payloadLength: 556,
    ttl: 64,
    dscpEcn: 0xc0,
    identification: 0,
    dontFragment: false,
    moreFragments: false,
    fragmentOffset: 0,
  });
  assert.equal(parseIcmp(out, 20, 556), { type: 3, code: 4, nextHopMtu: 1450, payloadLength: 548 });
  assert.equal(out.subarray(28, 576), original.subarray(0, 548));
});

test('emitIcmpUnreachable: net-unreachable in place, in the headroom in front of the original', () => {
  const headroom = 64;
  const buf = bigUdpPacket(100, headroom, Buffer.alloc(2048));
  const copy = Buffer.from(buf.subarray(headroom, headroom + 100));
  const n = emitIcmpUnreachable(buf, headroom - 28, ICMP_NET_UNREACHABLE, parseIPv4('10.244.1.1'), buf, headroom, 100, 1234);
  assert.is(n, 128);
  assert.is(checkIpv4(buf, headroom - 28, n), undefined);
  assert.equal(parseIcmp(buf, headroom - 8, 108), { type: 3, code: 0, payloadLength: 100 });
  assert.is(buf.readUInt32BE(headroom - 4), 0, 'unused word stays 0 unless frag-needed');
  assert.equal(buf.subarray(headroom, headroom + 100), copy);
  // Overlapping the other way: the reply written over the original's own start.
  const buf2 = bigUdpPacket(100, 0, Buffer.alloc(400));
  const n2 = emitIcmpUnreachable(buf2, 0, ICMP_HOST_UNREACHABLE, parseIPv4('10.244.1.1'), buf2, 0, 100);
  assert.is(checkIcmp(buf2, 20, n2 - 20), undefined);
  assert.equal(buf2.subarray(28, 128), copy);
  assert.is(parseIpv4(buf2, 0, n2).destination, parseIPv4('10.244.1.5'));
});

test('icmpErrorAllowed table (RFC 1122 3.2.2, RFC 1812 4.3.2.7)', () => {
  const make = (f: (ip: Ipv4View, buf: Buffer) => void): Buffer => {
    const buf = bigUdpPacket(60);
    f(new Ipv4View(buf, 0), buf);
    return buf;
  };
  const icmpOf = (type: number) =>
    make((ip, buf) => {
      ip.protocol = IPPROTO_ICMP;
      buf[20] = type;
    });
  const cases: Array<[string, Buffer, boolean]> = [
    ['plain UDP', make(() => {}), true],
    ['ICMP echo request', icmpOf(ICMP_ECHO_REQUEST), true],
    ['ICMP echo reply', icmpOf(ICMP_ECHO_REPLY), true],
    ['ICMP timestamp (13)', icmpOf(13), true],
    ['ICMP destination unreachable', icmpOf(3), false],
    ['ICMP source quench (4)', icmpOf(4), false],
    ['ICMP redirect (5)', icmpOf(5), false],
    ['ICMP time exceeded (11)', icmpOf(11), false],
    ['ICMP parameter problem (12)', icmpOf(12), false],
    ['ICMP unknown type 42', icmpOf(42), false],
    ['first fragment (MF, offset 0)', make((ip) => (ip.moreFragments = true)), true],
    ['non-first fragment', make((ip) => (ip.fragmentOffset = 1480)), false],
    ['last fragment', make((ip) => { ip.fragmentOffset = 8; ip.moreFragments = false; }), false],
    ['source 0.0.0.0', make((ip) => (ip.source = 0)), false],
    ['source 127.0.0.1', make((ip) => (ip.source = parseIPv4('127.0.0.1'))), false],
    ['source multicast', make((ip) => (ip.source = parseIPv4('224.0.0.5'))), false],
    ['source broadcast', make((ip) => (ip.source = 0xffffffff)), false],
    ['destination multicast', make((ip) => (ip.destination = parseIPv4('239.1.2.3'))), false],
    ['destination limited broadcast', make((ip) => (ip.destination = 0xffffffff)), false],
  ];
  for (const [name, buf, expected] of cases) assert.is(icmpErrorAllowed(buf, 0), expected, name);
});

test('checkIcmp table', () => {
  const echo = ICMP_ECHO_REQUEST_PACKET.subarray(20);
  const flipped = Buffer.from(echo);
  flipped[15] ^= 0x01;
  const cases: Array<[string, Buffer, number, string | undefined]> = [
    ['valid', echo, 16, undefined],
    ['header only, checksum then covers less', echo, 8, 'bad-checksum'],
    ['7 bytes', echo, 7, 'truncated'],
    ['len beyond buffer', echo, 17, 'truncated'],
    ['payload bit flipped', flipped, 16, 'bad-checksum'],
  ];
  for (const [name, buf, len, expected] of cases) assert.is(checkIcmp(buf, 0, len), expected, name);
  assert.throws(() => parseIcmp(flipped), (e: unknown) => e instanceof WireError && e.problem === 'bad-checksum');
});

test.run();
