import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { formatIPv6, parseIPv6 } from '../../src/wire/address6';
import { WireError } from '../../src/wire/errors';
import {
  IPPROTO_AH,
  IPPROTO_DSTOPTS,
  IPPROTO_FRAGMENT,
  IPPROTO_HOPOPTS,
  IPPROTO_ICMPV6,
  IPPROTO_NONE,
  IPPROTO_ROUTING,
  IPPROTO_UDP6,
  IPV6_HEADER_LEN,
  Ipv6UpperLayer,
  Ipv6View,
  MAX_EXTENSION_HEADERS,
  checkIpv6,
  emitIpv6,
  parseIpv6,
  walkIpv6,
  writeIpv6Header,
} from '../../src/wire/ipv6';
import { ECHO_REQUEST6_FRAME, MLD_REPORT_FRAME, UDP6_FRAME, ip6Of } from './fixtures6';

test('decode: the kernel echo request, field by field', () => {
  const p = ip6Of(ECHO_REQUEST6_FRAME);
  const v = new Ipv6View(p, 0);
  assert.is(v.version, 6);
  assert.is(v.trafficClass, 0);
  assert.is(v.flowLabel, 0xd086a);
  assert.is(v.payloadLength, 16);
  assert.is(v.totalLength, 56);
  assert.is(v.nextHeader, IPPROTO_ICMPV6);
  assert.is(v.hopLimit, 64);
  assert.is(formatIPv6(v.source), '2001:db8::a');
  assert.is(formatIPv6(v.destination), '2001:db8::b');
  assert.is(v.payloadOffset, 40);
  assert.equal(parseIpv6(p), {
    source: parseIPv6('2001:db8::a'),
    destination: parseIPv6('2001:db8::b'),
    nextHeader: IPPROTO_ICMPV6,
    payloadLength: 16,
    hopLimit: 64,
    trafficClass: 0,
    flowLabel: 0xd086a,
  });
});

test('encode: emitIpv6 and writeIpv6Header give back the kernel header byte for byte', () => {
  const p = ip6Of(UDP6_FRAME);
  const repr = parseIpv6(p);
  const out = Buffer.alloc(IPV6_HEADER_LEN);
  assert.is(emitIpv6(repr, out, 0), IPV6_HEADER_LEN);
  assert.equal(out.toString('hex'), p.subarray(0, 40).toString('hex'));
  const hot = Buffer.alloc(40);
  writeIpv6Header(hot, 0, IPPROTO_UDP6, 11, 64, p, 8, p, 24);
  const want = Buffer.from(p.subarray(0, 40));
  want.writeUInt32BE(0x60000000, 0); // the hot path writes no flow label
  assert.equal(hot.toString('hex'), want.toString('hex'));
});

test('writeIpv6Header may read its addresses from where it writes (swap in place)', () => {
  const p = Buffer.from(ip6Of(UDP6_FRAME));
  writeIpv6Header(p, 0, IPPROTO_UDP6, 11, 64, p, 24, p, 8);
  assert.is(formatIPv6(new Ipv6View(p, 0).source), '2001:db8::b');
  assert.is(formatIPv6(new Ipv6View(p, 0).destination), '2001:db8::a');
});

test('impossible lengths and versions are problems, never exceptions', () => {
  const p = ip6Of(ECHO_REQUEST6_FRAME);
  assert.is(checkIpv6(p, 0, p.length), undefined);
  assert.is(checkIpv6(p, 0, 39), 'truncated');
  assert.is(checkIpv6(p, 0, 0), 'truncated');
  assert.is(checkIpv6(p, 30, 40), 'truncated', 'runs past the buffer');
  assert.is(checkIpv6(p, -1, 40), 'truncated');
  assert.is(checkIpv6(p, 0, p.length - 1), 'bad-payload-length');
  const v4 = Buffer.from(p);
  v4[0] = 0x45;
  assert.is(checkIpv6(v4, 0, v4.length), 'bad-version');
  const padded = Buffer.concat([p, Buffer.alloc(6)]);
  assert.is(checkIpv6(padded, 0, padded.length), undefined, 'link padding after the payload is allowed');
  try {
    parseIpv6(p, 0, 39);
    assert.unreachable();
  } catch (e) {
    assert.instance(e, WireError);
    assert.is((e as WireError).problem, 'truncated');
  }
});

test('walk: the kernel MLD report steps over its hop-by-hop header to ICMPv6', () => {
  const p = ip6Of(MLD_REPORT_FRAME);
  const up = new Ipv6UpperLayer();
  assert.is(walkIpv6(p, 0, up), undefined);
  assert.is(up.protocol, IPPROTO_ICMPV6);
  assert.is(up.offset, 48);
  assert.is(up.extensions, 1);
  assert.is(p[up.offset], 143, 'MLDv2 report type');
});

/** An IPv6 packet whose payload is the given chain of [nextHeader, bytes] headers, then 8 bytes of UDP. */
function chain(headers: Array<[number, Buffer]>, upperProto = IPPROTO_UDP6): Buffer {
  const parts: Buffer[] = [];
  for (let i = 0; i < headers.length; i++) {
    const h = Buffer.from(headers[i][1]);
    h[0] = i + 1 < headers.length ? headers[i + 1][0] : upperProto;
    parts.push(h);
  }
  const payload = Buffer.concat([...parts, Buffer.alloc(8)]);
  const out = Buffer.alloc(40 + payload.length);
  emitIpv6(
    { source: parseIPv6('fd00::1'), destination: parseIPv6('fd00::2'), nextHeader: headers.length ? headers[0][0] : upperProto, payloadLength: payload.length, hopLimit: 64 },
    out,
    0,
  );
  payload.copy(out, 40);
  return out;
}
const opts = (units: number): Buffer => {
  const b = Buffer.alloc((units + 1) * 8);
  b[1] = units;
  return b;
};
const frag = (offset: number, more: boolean): Buffer => {
  const b = Buffer.alloc(8);
  b.writeUInt16BE(offset | (more ? 1 : 0), 2);
  return b;
};
const ah = (words: number): Buffer => {
  const b = Buffer.alloc((words + 2) * 4);
  b[1] = words;
  return b;
};

test('walk: every extension header kind, table-driven', () => {
  const up = new Ipv6UpperLayer();
  const cases: Array<[string, Buffer, number | string, number?]> = [
    ['no extension', chain([]), IPPROTO_UDP6, 40],
    ['hop-by-hop', chain([[IPPROTO_HOPOPTS, opts(0)]]), IPPROTO_UDP6, 48],
    ['hbh, dest, routing, dest', chain([[IPPROTO_HOPOPTS, opts(0)], [IPPROTO_DSTOPTS, opts(1)], [IPPROTO_ROUTING, opts(2)], [IPPROTO_DSTOPTS, opts(0)]]), IPPROTO_UDP6, 40 + 8 + 16 + 24 + 8],
    ['first fragment', chain([[IPPROTO_FRAGMENT, frag(0, true)]]), IPPROTO_UDP6, 48],
    ['AH (RFC 4302: (n + 2) * 4)', chain([[IPPROTO_AH, ah(4)]]), IPPROTO_UDP6, 40 + 24],
    ['no next header', chain([], IPPROTO_NONE), IPPROTO_NONE, 40],
    ['hop-by-hop second', chain([[IPPROTO_DSTOPTS, opts(0)], [IPPROTO_HOPOPTS, opts(0)]]), 'misplaced-hop-by-hop'],
    ['too many', chain(new Array(MAX_EXTENSION_HEADERS + 1).fill(0).map(() => [IPPROTO_DSTOPTS, opts(0)] as [number, Buffer])), 'too-many-extensions'],
    ['exactly the limit', chain(new Array(MAX_EXTENSION_HEADERS).fill(0).map(() => [IPPROTO_DSTOPTS, opts(0)] as [number, Buffer])), IPPROTO_UDP6, 40 + 8 * MAX_EXTENSION_HEADERS],
  ];
  for (const [name, p, want, offset] of cases) {
    const problem = walkIpv6(p, 0, up);
    if (typeof want === 'string') assert.is(problem, want, name);
    else {
      assert.is(problem, undefined, name);
      assert.is(up.protocol, want, name);
      assert.is(up.offset, offset, name);
    }
  }
});

test('walk: a non-first fragment stops at the fragment header, its offset and M flag reported', () => {
  const up = new Ipv6UpperLayer();
  const p = chain([[IPPROTO_FRAGMENT, frag(1232, false)]]);
  assert.is(walkIpv6(p, 0, up), undefined);
  assert.ok(up.fragment);
  assert.is(up.fragmentOffset, 1232);
  assert.not.ok(up.moreFragments);
  assert.is(up.protocol, IPPROTO_UDP6);
  assert.is(up.offset, 48);
});

test('walk: a header running past the payload length is truncated-extension, whatever the buffer holds', () => {
  const up = new Ipv6UpperLayer();
  const p = chain([[IPPROTO_DSTOPTS, opts(1)]]);
  p.writeUInt16BE(15, 4); // the payload ends inside the 16-byte options header
  assert.is(walkIpv6(p, 0, up), 'truncated-extension');
  p.writeUInt16BE(1, 4); // not even the length byte
  assert.is(walkIpv6(p, 0, up), 'truncated-extension');
  const f = chain([[IPPROTO_FRAGMENT, frag(0, true)]]);
  f.writeUInt16BE(7, 4);
  assert.is(walkIpv6(f, 0, up), 'truncated-extension');
  const empty = chain([[IPPROTO_HOPOPTS, opts(0)]]);
  empty.writeUInt16BE(0, 4);
  assert.is(walkIpv6(empty, 0, up), 'truncated-extension');
});

test.run();
