import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { WireError } from '../../src/wire/errors';
import {
  VXLAN_FLAG_I,
  VXLAN_HEADER_LEN,
  VXLAN_OVERHEAD,
  VXLAN_PORT_IANA,
  VXLAN_PORT_LINUX,
  VxlanView,
  checkVxlan,
  emitVxlan,
  parseVxlan,
  writeVxlanHeader,
} from '../../src/wire/vxlan';
import { OFFSETS, VXLAN_8472_ICMP_FRAME, VXLAN_ARP_FRAME, hex } from './fixtures';

test('constants match RFC 7348 and Linux', () => {
  assert.is(VXLAN_HEADER_LEN, 8);
  assert.is(VXLAN_PORT_IANA, 4789);
  assert.is(VXLAN_PORT_LINUX, 8472);
  assert.is(VXLAN_OVERHEAD, 14 + 8 + 8 + 20);
  assert.is(VXLAN_ARP_FRAME.readUInt16BE(OFFSETS.OUTER_UDP + 2), VXLAN_PORT_IANA);
  assert.is(VXLAN_8472_ICMP_FRAME.readUInt16BE(OFFSETS.OUTER_UDP + 2), VXLAN_PORT_LINUX);
});

test('decode: the kernel VTEP header, VNI 1', () => {
  const view = new VxlanView(VXLAN_ARP_FRAME, OFFSETS.VXLAN);
  assert.is(view.flags, VXLAN_FLAG_I);
  assert.ok(view.vniValid);
  assert.is(view.vni, 1);
  assert.is(view.payloadOffset, OFFSETS.INNER_ETHERNET);
  assert.equal(parseVxlan(VXLAN_8472_ICMP_FRAME, OFFSETS.VXLAN, VXLAN_8472_ICMP_FRAME.length - OFFSETS.VXLAN), { vni: 1 });
});

test('encode: writeVxlanHeader matches the kernel and clears reserved bytes', () => {
  const out = Buffer.alloc(VXLAN_HEADER_LEN, 0xff);
  writeVxlanHeader(out, 0, 1);
  assert.equal(out, VXLAN_ARP_FRAME.subarray(OFFSETS.VXLAN, OFFSETS.VXLAN + 8));
  out.fill(0xff);
  assert.is(emitVxlan({ vni: 0xabcdef }, out, 0), 8);
  assert.is(out.toString('hex'), '08000000abcdef00');
  writeVxlanHeader(out, 0, 4096); // Calico's VNI
  assert.is(out.toString('hex'), '0800000000100000');
  assert.equal(parseVxlan(out), { vni: 4096 });
});

test('the view ignores reserved bits and exposes the I flag', () => {
  const buf = hex('0cffffff000001ff'); // I flag plus junk in reserved bits: still VNI 1 (receivers ignore reserved)
  const view = new VxlanView().wrap(buf, 0);
  assert.ok(view.vniValid);
  assert.is(view.vni, 1);
  view.vni = 0x1234567; // only 24 bits fit
  assert.is(view.vni, 0x234567);
  assert.is(buf[7], 0xff);
  view.flags = 0;
  assert.not.ok(view.vniValid);
});

test('checkVxlan table', () => {
  const cases: Array<[string, string, string | undefined]> = [
    ['I flag set', '0800000000000100', undefined],
    ['I flag with reserved bits set', 'ff000000000001ff', undefined],
    ['I flag clear', '0000000000000100', 'no-vni-flag'],
    ['G-flag only (GBP extension) without I', '8000000000000100', 'no-vni-flag'],
    ['7 bytes', '08000000000001', 'truncated'],
    ['empty', '', 'truncated'],
  ];
  for (const [name, text, expected] of cases) {
    const buf = hex(text);
    assert.is(checkVxlan(buf, 0, buf.length), expected, name);
  }
  assert.is(checkVxlan(Buffer.alloc(8), 4, 8), 'truncated', 'len beyond buffer');
  assert.throws(() => parseVxlan(hex('0000000000000100')), (e: unknown) => e instanceof WireError && e.problem === 'no-vni-flag');
});

test.run();
