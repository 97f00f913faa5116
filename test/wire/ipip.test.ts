import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { parseIPv4 } from '../../src/wire/address';
import { WireError } from '../../src/wire/errors';
import { IPIP_OVERHEAD, checkIpip, emitIpipOuter, ipipInnerOffset, parseIpip } from '../../src/wire/ipip';
import { IPPROTO_IPIP, Ipv4View, parseIpv4 } from '../../src/wire/ipv4';
import { ICMP_ECHO_REQUEST_PACKET, hex } from './fixtures';

const OUTER_SRC = parseIPv4('198.51.100.1');
const OUTER_DST = parseIPv4('198.51.100.2');

/** Outer header + the captured ping (DF set), as a raw socket would receive it. */
function ipipPacket(): Buffer {
  const buf = Buffer.alloc(IPIP_OVERHEAD + ICMP_ECHO_REQUEST_PACKET.length);
  ICMP_ECHO_REQUEST_PACKET.copy(buf, IPIP_OVERHEAD);
  emitIpipOuter({ source: OUTER_SRC, destination: OUTER_DST, identification: 7 }, buf, 0);
  return buf;
}

test('overhead is one IPv4 header (MTU 1480 on a 1500 underlay)', () => {
  assert.is(IPIP_OVERHEAD, 20);
});

test('encode: the outer header, byte for byte (RFC 2003: DSCP and DF copied from the inner header)', () => {
  const buf = ipipPacket();
  // 45 00 | total 56 | id 7 | DF | ttl 64 proto 4 | checksum | 198.51.100.1 | 198.51.100.2
  const expected = hex('45000038 00074000 4004 0000 c6336401 c6336402');
  const outer = new Ipv4View(buf, 0);
  expected.writeUInt16BE(outer.computeChecksum(), 10);
  assert.equal(buf.subarray(0, 20), expected);
  assert.ok(outer.checksumValid());
  assert.equal(buf.subarray(20), ICMP_ECHO_REQUEST_PACKET, 'inner untouched');
  const tos = Buffer.from(buf);
  tos[21] = 0xb8; // inner DSCP EF
  tos.writeUInt16BE(0, 26); // inner no DF
  new Ipv4View(tos, 20).fillChecksum();
  emitIpipOuter({ source: OUTER_SRC, destination: OUTER_DST, ttl: 5 }, tos, 0);
  assert.equal(parseIpv4(tos, 0, 56), {
    source: OUTER_SRC,
    destination: OUTER_DST,
    protocol: IPPROTO_IPIP,
    payloadLength: 36,
    ttl: 5,
    dscpEcn: 0xb8,
    identification: 0,
    dontFragment: false,
    moreFragments: false,
    fragmentOffset: 0,
  });
});

test('decode: inner offset and parse', () => {
  const buf = ipipPacket();
  assert.is(ipipInnerOffset(buf, 0), 20);
  assert.equal(parseIpip(buf), { outerSource: OUTER_SRC, outerDestination: OUTER_DST, innerOffset: 20, innerLength: 36 });
  assert.is(parseIpv4(buf, ipipInnerOffset(buf, 0)).destination, parseIPv4('127.0.0.1'));
});

test('checkIpip table: outer problems, not protocol 4, inner problems', () => {
  const edit = (f: (b: Buffer) => void, refillOuter = true): Buffer => {
    const b = ipipPacket();
    f(b);
    if (refillOuter) new Ipv4View(b, 0).fillChecksum();
    return b;
  };
  const cases: Array<[string, Buffer, number, string | undefined]> = [
    ['valid', ipipPacket(), 56, undefined],
    ['outer truncated', ipipPacket(), 19, 'outer-truncated'],
    ['outer checksum', edit((b) => (b[8] = 1), false), 56, 'outer-bad-checksum'],
    ['outer says 57 bytes', edit((b) => b.writeUInt16BE(57, 2)), 56, 'outer-bad-total-length'],
    ['outer version 6', edit((b) => (b[0] = 0x65)), 56, 'outer-bad-version'],
    ['protocol 17', edit((b) => (b[9] = 17)), 56, 'not-ipip'],
    ['protocol 41 (6in4)', edit((b) => (b[9] = 41)), 56, 'not-ipip'],
    ['outer carries only 19 inner bytes', edit((b) => b.writeUInt16BE(39, 2)), 56, 'inner-truncated'],
    ['outer shorter than inner totalLength', edit((b) => b.writeUInt16BE(55, 2)), 56, 'inner-bad-total-length'],
    ['inner version 6', edit((b) => (b[20] = 0x65)), 56, 'inner-bad-version'],
    ['inner checksum', edit((b) => (b[28] = 1)), 56, 'inner-bad-checksum'],
  ];
  for (const [name, buf, len, expected] of cases) assert.is(checkIpip(buf, 0, len), expected, name);
  assert.throws(() => parseIpip(edit((b) => (b[9] = 17))), (e: unknown) => e instanceof WireError && e.problem === 'not-ipip' && e.layer === 'ipip');
});

test.run();
