import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { RouteTable6 } from '../../src/dataplane/route-table6';
import { ForwardingTables } from '../../src/dataplane/tables';
import { formatCidr6, parseCidr6, parseIPv6, writeIPv6, ipv6Words } from '../../src/wire/address6';
import { parseCidr, parseIPv4 } from '../../src/wire/address';

const Lpm6 = suite('route table 6');

Lpm6('longest prefix wins at every length class; no match is undefined', () => {
  const t = new RouteTable6<string>();
  t.set(parseCidr6('fd00::/8'), 'eight');
  t.set(parseCidr6('fd00:10:244::/56'), 'fifty-six');
  t.set(parseCidr6('fd00:10:244:2::/64'), 'sixty-four');
  t.set(parseCidr6('fd00:10:244:2::80/121'), 'one-twenty-one');
  t.set(parseCidr6('fd00:10:244:2::9/128'), 'host');
  const cases: [string, string | undefined][] = [
    ['fd00:10:244:2::9', 'host'],
    ['fd00:10:244:2::ff', 'one-twenty-one'],
    ['fd00:10:244:2::7f', 'sixty-four'],
    ['fd00:10:244:3::1', 'fifty-six'],
    ['fd00:10:244:ff00::1', 'eight'],
    ['fd00:10:245::1', 'eight'],
    ['fe80::1', undefined],
    ['2001:db8::1', undefined],
  ];
  for (const [address, want] of cases) {
    assert.is(t.lookup(parseIPv6(address)), want, address);
    const buf = Buffer.alloc(40);
    writeIPv6(buf, 24, parseIPv6(address));
    assert.is(t.lookupAt(buf, 24), want, `${address} read from a packet`);
  }
});

Lpm6('a default route matches everything; set replaces; delete removes exactly one prefix', () => {
  const t = new RouteTable6<string>();
  t.set(parseCidr6('::/0'), 'default');
  t.set(parseCidr6('fd00:10:244:2::/64'), 'node2');
  t.set(parseCidr6('fd00:10:244:2::/64'), 'node2 again');
  assert.is(t.size, 2);
  assert.is(t.lookup(parseIPv6('ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff')), 'default');
  assert.is(t.lookup(parseIPv6('fd00:10:244:2::1')), 'node2 again');
  assert.ok(t.delete(parseCidr6('fd00:10:244:2::/64')));
  assert.not.ok(t.delete(parseCidr6('fd00:10:244:2::/64')));
  assert.not.ok(t.delete(parseCidr6('fd00:10:244:3::/64')));
  assert.is(t.lookup(parseIPv6('fd00:10:244:2::1')), 'default');
  assert.ok(t.delete(parseCidr6('::/0')));
  assert.is(t.size, 0);
  assert.is(t.lookup(parseIPv6('fd00:10:244:2::1')), undefined);
  assert.equal([...t.entries()], []);
});

Lpm6('10,000 /64 routes: each found, neighbors not confused, entries list them all', () => {
  const t = new RouteTable6<number>();
  const base = parseIPv6('fd00:10:244::');
  for (let i = 0; i < 10_000; i++) t.set({ address: base + (BigInt(i) << 64n), prefixLength: 64 }, i);
  assert.is(t.size, 10_000);
  for (let i = 0; i < 10_000; i += 97) assert.is(t.lookup(base + (BigInt(i) << 64n) + 0x1234n), i);
  assert.is(t.lookup(base + (10_000n << 64n)), undefined);
  assert.is([...t.entries()].length, 10_000);
  const [first] = t.entries();
  assert.is(formatCidr6(first[0]), 'fd00:10:244::/64');
});

Lpm6('deleting every other route of 10,000 and adding others reuses slots without losing or confusing any', () => {
  const t = new RouteTable6<number>();
  const base = parseIPv6('fd00:10:244::');
  const at = (i: number): bigint => base + (BigInt(i) << 64n);
  for (let i = 0; i < 10_000; i++) t.set({ address: at(i), prefixLength: 64 }, i);
  for (let i = 0; i < 10_000; i += 2) assert.ok(t.delete({ address: at(i), prefixLength: 64 }));
  for (let i = 10_000; i < 15_000; i++) t.set({ address: at(i), prefixLength: 64 }, i);
  assert.is(t.size, 10_000);
  for (let i = 0; i < 15_000; i++) assert.is(t.lookup(at(i) + 1n), i < 10_000 && i % 2 === 0 ? undefined : i, String(i));
  assert.is([...t.entries()].length, 10_000);
});

Lpm6('words with the top bit set (unsigned) match what the packet holds', () => {
  const t = new RouteTable6<string>();
  t.set(parseCidr6('ffff:ffff:8000::/33'), 'high');
  const [w0, w1, w2, w3] = ipv6Words(parseIPv6('ffff:ffff:8000:1::'));
  assert.is(t.lookupWords(w0, w1, w2, w3), 'high');
  assert.is(t.lookupWords(0xffffffff | 0, 0x80000000 | 0, 0, 0), 'high', 'signed words from an Int32 read match too');
});

const Vteps6 = suite('forwarding tables: IPv6 VTEPs');

Vteps6('addVtep6 over an IPv6 underlay: found by words, holds its subnet only, forgotten with its last subnet', () => {
  const t = new ForwardingTables();
  const under = parseIPv6('2001:db8::12');
  t.addVtep6(under, parseCidr6('fd00:10:244:2::/64'));
  const vtep = t.vtepOf6Words(...ipv6Words(under));
  assert.ok(vtep);
  assert.is(vtep!.underlayIp, under);
  const pkt = Buffer.alloc(16);
  writeIPv6(pkt, 0, parseIPv6('fd00:10:244:2::5'));
  assert.ok(vtep!.holds6At(pkt, 0));
  writeIPv6(pkt, 0, parseIPv6('fd00:10:244:3::5'));
  assert.not.ok(vtep!.holds6At(pkt, 0));
  assert.is(t.vtepOf6Words(...ipv6Words(parseIPv6('2001:db8::13'))), undefined);
  assert.equal(t.knownVteps6, [under]);
  t.removeVtep6(under, parseCidr6('fd00:10:244:2::/64'));
  assert.is(t.vtepOf6Words(...ipv6Words(under)), undefined);
  assert.equal(t.knownVteps6, []);
});

Vteps6('addVtep6 over an IPv4 underlay joins the IPv4 VTEP: both families held, removed one by one', () => {
  const t = new ForwardingTables();
  const under = parseIPv4('192.0.2.12');
  t.addVtep(under, parseCidr('10.17.2.0/24'));
  t.addVtep6(under, parseCidr6('fd00:10:244:2::/64'));
  const vtep = t.vtepOf(under)!;
  assert.ok(vtep.holds(parseIPv4('10.17.2.4')));
  const pkt = Buffer.alloc(16);
  writeIPv6(pkt, 0, parseIPv6('fd00:10:244:2::4'));
  assert.ok(vtep.holds6At(pkt, 0));
  t.removeVtep(under, parseCidr('10.17.2.0/24'));
  assert.ok(t.vtepOf(under), 'still known for its IPv6 subnet');
  assert.not.ok(t.vtepOf(under)!.holds(parseIPv4('10.17.2.4')));
  t.removeVtep6(under, parseCidr6('fd00:10:244:2::/64'));
  assert.is(t.vtepOf(under), undefined);
});

Lpm6.run();
Vteps6.run();
