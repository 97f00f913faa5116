import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { parseIPv4 } from '../../src/wire/address';
import { internetChecksum } from '../../src/wire/checksum';
import { WireError } from '../../src/wire/errors';
import {
  IPPROTO_ICMP,
  IPPROTO_IPIP,
  IPPROTO_TCP,
  IPPROTO_UDP,
  IPV4_HEADER_LEN,
  Ipv4View,
  checkIpv4,
  emitIpv4,
  parseIpv4,
  writeIpv4Header,
  type Ipv4Repr,
} from '../../src/wire/ipv4';
import { ICMP_ECHO_REQUEST_PACKET, OFFSETS, TCP_SYN_PACKET, VXLAN_8472_ICMP_FRAME, hex } from './fixtures';

test('protocol numbers', () => {
  assert.equal([IPPROTO_ICMP, IPPROTO_IPIP, IPPROTO_TCP, IPPROTO_UDP, IPV4_HEADER_LEN], [1, 4, 6, 17, 20]);
});

test('decode: a real ping, every field', () => {
  const v = new Ipv4View(ICMP_ECHO_REQUEST_PACKET, 0);
  assert.is(v.version, 4);
  assert.is(v.headerLength, 20);
  assert.is(v.dscpEcn, 0);
  assert.is(v.totalLength, 36);
  assert.is(v.identification, 0x286a);
  assert.is(v.dontFragment, true);
  assert.is(v.moreFragments, false);
  assert.is(v.fragmentOffset, 0);
  assert.is(v.ttl, 64);
  assert.is(v.protocol, IPPROTO_ICMP);
  assert.is(v.checksum, 0x146d);
  assert.is(v.source, parseIPv4('127.0.0.1'));
  assert.is(v.destination, parseIPv4('127.0.0.1'));
  assert.is(v.payloadOffset, 20);
  assert.is(v.payloadLength, 16);
  assert.ok(v.checksumValid());
  assert.is(v.computeChecksum(), 0x146d);
});

test('decode: outer and inner headers of a kernel VXLAN frame', () => {
  const frame = VXLAN_8472_ICMP_FRAME;
  const outer = parseIpv4(frame, OFFSETS.OUTER_IPV4, frame.length - OFFSETS.OUTER_IPV4);
  assert.equal(outer, {
    source: parseIPv4('192.0.2.1'),
    destination: parseIPv4('192.0.2.3'),
    protocol: IPPROTO_UDP,
    payloadLength: 8 + 8 + 14 + 36,
    ttl: 64,
    dscpEcn: 0,
    identification: 0xe005,
    dontFragment: false, // the kernel VTEP does not set DF on the outer header by default
    moreFragments: false,
    fragmentOffset: 0,
  });
  const inner = parseIpv4(frame, OFFSETS.INNER_PAYLOAD);
  assert.is(inner.source, parseIPv4('10.2.2.1'));
  assert.is(inner.destination, parseIPv4('10.2.2.2'));
  assert.is(inner.dontFragment, true);
});

test('encode: emit reproduces the captured header byte for byte', () => {
  const out = Buffer.alloc(20);
  assert.is(emitIpv4(parseIpv4(ICMP_ECHO_REQUEST_PACKET), out, 0), IPV4_HEADER_LEN);
  assert.equal(out, ICMP_ECHO_REQUEST_PACKET.subarray(0, 20));
});

test('round trip with fragment fields and an unknown protocol', () => {
  const repr: Ipv4Repr = {
    source: parseIPv4('198.51.100.7'),
    destination: parseIPv4('10.244.3.9'),
    protocol: 253, // experimental: stays a number
    payloadLength: 1480,
    ttl: 1,
    dscpEcn: 0xb8,
    identification: 0xbeef,
    dontFragment: false,
    moreFragments: true,
    fragmentOffset: 2960,
  };
  const buf = Buffer.alloc(1600);
  emitIpv4(repr, buf, 100);
  assert.is(checkIpv4(buf, 100, 1500), undefined);
  assert.equal(parseIpv4(buf, 100, 1500), repr);
  assert.is(buf.readUInt16BE(106), 0x2000 | (2960 / 8));
});

test('writeIpv4Header (no repr object) equals emitIpv4 with the same fields, over a dirty buffer', () => {
  const a = Buffer.alloc(20, 0xff);
  const b = Buffer.alloc(20, 0x00);
  writeIpv4Header(a, 0, parseIPv4('192.0.2.1'), parseIPv4('192.0.2.9'), IPPROTO_UDP, 1000, 32, 0x10);
  emitIpv4({ source: parseIPv4('192.0.2.1'), destination: parseIPv4('192.0.2.9'), protocol: IPPROTO_UDP, payloadLength: 1000, ttl: 32, dscpEcn: 0x10 }, b, 0);
  assert.equal(a, b);
  assert.is(checkIpv4(Buffer.concat([a, Buffer.alloc(1000)]), 0, 1020), undefined);
});

test('setters keep neighbouring bits (version/IHL, flags/offset)', () => {
  const buf = Buffer.from(ICMP_ECHO_REQUEST_PACKET);
  const v = new Ipv4View().wrap(buf, 0);
  v.headerLength = 24;
  assert.is(v.version, 4);
  assert.is(buf[0], 0x46);
  v.version = 6;
  assert.is(v.headerLength, 24);
  v.fragmentOffset = 8 * 0x1fff;
  assert.ok(v.dontFragment);
  v.dontFragment = false;
  v.moreFragments = true;
  assert.is(v.fragmentOffset, 8 * 0x1fff);
  assert.is(buf.readUInt16BE(6), 0x3fff);
  v.fragmentOffset = 0;
  assert.is(buf.readUInt16BE(6), 0x2000);
});

test('fillChecksum and header options', () => {
  // A header with 4 bytes of options (Router Alert, RFC 2113): IHL 6.
  const buf = hex('46000024 00004000 01020000 0a000001 e0000016 94040000 ' + '11640000');
  const v = new Ipv4View(buf, 0);
  assert.is(v.headerLength, 24);
  assert.is(v.payloadOffset, 24);
  assert.not.ok(v.checksumValid());
  v.fillChecksum();
  assert.ok(v.checksumValid());
  assert.is(internetChecksum(buf, 0, 24), 0);
  assert.is(checkIpv4(buf, 0, buf.length), 'bad-total-length'); // totalLength 36 > 28 bytes present
  buf.writeUInt16BE(28, 2);
  v.fillChecksum();
  assert.is(checkIpv4(buf, 0, buf.length), undefined);
});

test('decrementTtl patches the checksum incrementally; equals a full recomputation for every TTL', () => {
  for (const packet of [ICMP_ECHO_REQUEST_PACKET, TCP_SYN_PACKET]) {
    const buf = Buffer.from(packet);
    const v = new Ipv4View(buf, 0);
    v.ttl = 255;
    v.fillChecksum();
    for (let expected = 254; expected >= 0; expected--) {
      assert.is(v.decrementTtl(), expected);
      assert.is(v.ttl, expected);
      assert.is(v.checksum, v.computeChecksum(), `ttl ${expected}`);
    }
    assert.is(v.decrementTtl(), 0, 'a TTL of 0 stays 0');
    assert.ok(v.checksumValid());
  }
});

test('checkIpv4 table: every problem, lengths at and around the edges', () => {
  const good = ICMP_ECHO_REQUEST_PACKET;
  const edit = (f: (b: Buffer) => void, refill = true): Buffer => {
    const b = Buffer.from(good);
    f(b);
    if (refill) new Ipv4View(b, 0).fillChecksum();
    return b;
  };
  const cases: Array<[string, Buffer, number, number, string | undefined]> = [
    ['valid', good, 0, 36, undefined],
    ['valid with link padding after totalLength', Buffer.concat([good, Buffer.alloc(10)]), 0, 46, undefined],
    ['19 bytes', good, 0, 19, 'truncated'],
    ['empty', Buffer.alloc(0), 0, 0, 'truncated'],
    ['len beyond buffer', good, 1, 36, 'truncated'],
    ['version 6', edit((b) => (b[0] = 0x65)), 0, 36, 'bad-version'],
    ['version 0', edit((b) => (b[0] = 0x05)), 0, 36, 'bad-version'],
    ['IHL 4', edit((b) => (b[0] = 0x44), false), 0, 36, 'bad-header-length'],
    ['IHL 0', edit((b) => (b[0] = 0x40), false), 0, 36, 'bad-header-length'],
    ['IHL 15 but only 36 bytes', edit((b) => (b[0] = 0x4f), false), 0, 36, 'truncated'],
    ['IHL 8 within len, totalLength 36', edit((b) => (b[0] = 0x48), false), 0, 36, 'bad-checksum'],
    ['totalLength below header', edit((b) => b.writeUInt16BE(19, 2)), 0, 36, 'bad-total-length'],
    ['totalLength beyond what arrived', edit((b) => b.writeUInt16BE(37, 2)), 0, 36, 'bad-total-length'],
    ['totalLength = header only', edit((b) => b.writeUInt16BE(20, 2)), 0, 36, undefined],
    ['checksum off by one', edit((b) => b.writeUInt16BE(0x146e, 10), false), 0, 36, 'bad-checksum'],
    ['source changed, checksum stale', edit((b) => (b[15] = 2), false), 0, 36, 'bad-checksum'],
  ];
  for (const [name, buf, off, len, expected] of cases) assert.is(checkIpv4(buf, off, len), expected, name);
});

test('parseIpv4 throws WireError with the check problem', () => {
  const bad = Buffer.from(ICMP_ECHO_REQUEST_PACKET);
  bad[10] ^= 1;
  try {
    parseIpv4(bad);
    assert.unreachable();
  } catch (err) {
    assert.instance(err, WireError);
    assert.is((err as WireError).problem, 'bad-checksum');
    assert.is((err as Error).message, 'ipv4: bad-checksum');
  }
});

test.run();
