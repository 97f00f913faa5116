import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { BROADCAST_MAC, parseMac } from '../../src/wire/address';
import { WireError } from '../../src/wire/errors';
import {
  ETHERNET_HEADER_LEN,
  ETHERTYPE_ARP,
  ETHERTYPE_IPV4,
  EthernetView,
  checkEthernet,
  emitEthernet,
  parseEthernet,
} from '../../src/wire/ethernet';
import { OFFSETS, VXLAN_ARP_FRAME, VXLAN_8472_ICMP_FRAME } from './fixtures';

test('decode: outer and inner Ethernet headers of a real VXLAN frame', () => {
  const outer = new EthernetView(VXLAN_ARP_FRAME, 0);
  assert.is(outer.destination, parseMac('02:00:00:00:00:02'));
  assert.is(outer.source, parseMac('02:00:00:00:00:01'));
  assert.is(outer.etherType, ETHERTYPE_IPV4);
  assert.is(outer.payloadOffset, OFFSETS.OUTER_IPV4);
  const inner = outer.wrap(VXLAN_ARP_FRAME, OFFSETS.INNER_ETHERNET);
  assert.is(inner.destination, BROADCAST_MAC);
  assert.is(inner.source, parseMac('02:00:00:00:01:01'));
  assert.is(inner.etherType, ETHERTYPE_ARP);
  assert.equal(parseEthernet(VXLAN_8472_ICMP_FRAME, OFFSETS.INNER_ETHERNET), {
    destination: parseMac('02:00:00:02:02:02'),
    source: parseMac('02:00:00:00:02:01'),
    etherType: ETHERTYPE_IPV4,
  });
});

test('encode: emit reproduces the captured inner header byte for byte', () => {
  const out = Buffer.alloc(ETHERNET_HEADER_LEN);
  const n = emitEthernet(parseEthernet(VXLAN_ARP_FRAME, OFFSETS.INNER_ETHERNET, 42), out, 0);
  assert.is(n, ETHERNET_HEADER_LEN);
  assert.equal(out, VXLAN_ARP_FRAME.subarray(OFFSETS.INNER_ETHERNET, OFFSETS.INNER_ETHERNET + ETHERNET_HEADER_LEN));
});

test('setters write through the view at its offset and leave neighbours alone', () => {
  const buf = Buffer.alloc(20, 0xee);
  const view = new EthernetView(buf, 3);
  view.destination = parseMac('66:01:02:03:04:05');
  view.source = 0x0000000000ab;
  view.etherType = 0x88b5; // unknown ethertypes are plain numbers
  assert.is(buf.toString('hex'), 'eeeeee' + '660102030405' + '0000000000ab' + '88b5' + 'eeeeee');
  assert.is(parseEthernet(buf, 3, 14).etherType, 0x88b5);
});

test('impossible lengths', () => {
  const cases: Array<[string, Buffer, number, number, string | undefined]> = [
    ['exactly a header', Buffer.alloc(14), 0, 14, undefined],
    ['one byte short', Buffer.alloc(14), 0, 13, 'truncated'],
    ['len beyond buffer', Buffer.alloc(14), 1, 14, 'truncated'],
    ['empty', Buffer.alloc(0), 0, 0, 'truncated'],
    ['negative offset', Buffer.alloc(20), -1, 14, 'truncated'],
  ];
  for (const [name, buf, off, len, expected] of cases) assert.is(checkEthernet(buf, off, len), expected, name);
  try {
    parseEthernet(Buffer.alloc(13));
    assert.unreachable('parse accepted 13 bytes');
  } catch (err) {
    assert.instance(err, WireError);
    assert.is((err as WireError).problem, 'truncated');
    assert.is((err as WireError).layer, 'ethernet');
  }
});

test.run();
