import { test } from 'uvu';
import * as assert from 'uvu/assert';
import {
  cidr6Contains,
  formatCidr6,
  formatIPv6,
  ipv6FromWords,
  ipv6Words,
  ipv6WordsEqual,
  parseCidr6,
  parseIPv6,
  prefixMask6,
  readIPv6,
  writeIPv6,
} from '../../src/wire/address6';

test('parse: the RFC 4291 text forms', () => {
  assert.is(parseIPv6('::'), 0n);
  assert.is(parseIPv6('::1'), 1n);
  assert.is(parseIPv6('fd00:10:244:1::'), 0xfd000010024400010000000000000000n);
  assert.is(parseIPv6('FD00:0010:0244:0001:0000:0000:0000:0001'), 0xfd000010024400010000000000000001n);
  assert.is(parseIPv6('::ffff:192.0.2.1'), 0xffffc0000201n);
  assert.is(parseIPv6('2001:db8::8:800:200c:417a'), 0x20010db80000000000080800200c417an);
});

test('parse: refuses what is not an address', () => {
  for (const bad of ['', ':', ':::', '1::2::3', '1:2:3:4:5:6:7:8:9', '1:2:3:4:5:6:7', 'g::1', '12345::', '::1.2.3.256', 'fe80::1%eth0', '10.0.0.1', '1:2:3:4:5:6:7:8::']) {
    assert.throws(() => parseIPv6(bad), /invalid IPv6 address/, bad);
  }
});

test('format: RFC 5952 section 4 (longest zero run, first on a tie, no single-group ::, lower case)', () => {
  assert.is(formatIPv6(0n), '::');
  assert.is(formatIPv6(1n), '::1');
  assert.is(formatIPv6(parseIPv6('2001:db8:0:0:1:0:0:1')), '2001:db8::1:0:0:1');
  assert.is(formatIPv6(parseIPv6('2001:db8:0:1:1:1:1:1')), '2001:db8:0:1:1:1:1:1');
  assert.is(formatIPv6(parseIPv6('2001:0:0:1:0:0:0:1')), '2001:0:0:1::1');
  assert.is(formatIPv6(parseIPv6('FD00:10:244:1::')), 'fd00:10:244:1::');
  for (const text of ['fd00:10:244::', '2001:db8::8:800:200c:417a', 'fe80::1', '1::', '1:2:3:4:5:6:7:8']) assert.is(formatIPv6(parseIPv6(text)), text);
});

test('CIDR: parse, host bits, contains, masks', () => {
  const net = parseCidr6('fd00:10:244::/56');
  assert.is(net.prefixLength, 56);
  assert.is(formatCidr6(net), 'fd00:10:244::/56');
  assert.ok(cidr6Contains(net, parseIPv6('fd00:10:244:ff::1')));
  assert.not.ok(cidr6Contains(net, parseIPv6('fd00:10:244:100::1')));
  assert.throws(() => parseCidr6('fd00:10:244:1::1/64'), /host bits set \(did you mean fd00:10:244:1::\/64\?\)/);
  assert.is(formatCidr6(parseCidr6('fd00:10:244:1::1/64', true)), 'fd00:10:244:1::/64');
  assert.throws(() => parseCidr6('::/129'), /prefix must be 0-128/);
  assert.throws(() => parseCidr6('fd00::'), /expected ADDRESS\/PREFIX/);
  assert.is(prefixMask6(0), 0n);
  assert.is(prefixMask6(128), (1n << 128n) - 1n);
  assert.is(prefixMask6(64), ((1n << 64n) - 1n) << 64n);
});

test('bytes and words: the data path reads what the control plane wrote', () => {
  const ip = parseIPv6('fd00:10:244:1:a:b:c:d');
  const buf = Buffer.alloc(20);
  writeIPv6(buf, 2, ip);
  assert.is(buf.subarray(2, 18).toString('hex'), 'fd0000100244000100' + '0a000b000c000d'.padStart(14, '0'));
  assert.is(readIPv6(buf, 2), ip);
  const words = ipv6Words(ip);
  assert.equal(words, [0xfd000010, 0x02440001, 0x000a000b, 0x000c000d]);
  assert.is(ipv6FromWords(...words), ip);
  assert.ok(ipv6WordsEqual(buf, 2, words));
  buf[17] ^= 1;
  assert.not.ok(ipv6WordsEqual(buf, 2, words));
});

test.run();
