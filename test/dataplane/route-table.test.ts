import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { RouteTable } from '../../src/dataplane/route-table';
import { formatIPv4, parseCidr, parseIPv4 } from '../../src/wire/address';

const Lpm = suite('route table');

Lpm('longest prefix wins; no match is undefined', () => {
  const t = new RouteTable<string>();
  t.set(parseCidr('10.0.0.0/8'), 'eight');
  t.set(parseCidr('10.17.0.0/16'), 'sixteen');
  t.set(parseCidr('10.17.2.0/24'), 'twenty-four');
  t.set(parseCidr('10.17.2.9/32'), 'host');
  const cases: [string, string | undefined][] = [
    ['10.17.2.9', 'host'],
    ['10.17.2.10', 'twenty-four'],
    ['10.17.3.1', 'sixteen'],
    ['10.200.0.1', 'eight'],
    ['11.0.0.1', undefined],
  ];
  for (const [address, want] of cases) assert.is(t.lookup(parseIPv4(address)), want, address);
});

Lpm('a default route matches everything; delete removes exactly one prefix', () => {
  const t = new RouteTable<string>();
  t.set(parseCidr('0.0.0.0/0'), 'default');
  t.set(parseCidr('10.17.2.0/24'), 'node2');
  assert.is(t.lookup(parseIPv4('255.255.255.255')), 'default');
  assert.ok(t.delete(parseCidr('10.17.2.0/24')));
  assert.not.ok(t.delete(parseCidr('10.17.2.0/24')));
  assert.is(t.lookup(parseIPv4('10.17.2.1')), 'default');
  assert.is(t.size, 1);
});

Lpm('10,000 leases: every subnet resolves to its own route, and re-setting does not grow the table', () => {
  const t = new RouteTable<number>();
  const base = parseIPv4('10.0.0.0');
  for (let i = 0; i < 10_000; i++) t.set({ address: (base + i * 256) >>> 0, prefixLength: 24 }, i);
  for (let i = 0; i < 10_000; i++) t.set({ address: (base + i * 256) >>> 0, prefixLength: 24 }, i);
  assert.is(t.size, 10_000);
  for (let i = 0; i < 10_000; i += 7) {
    const host = (base + i * 256 + 1 + (i % 250)) >>> 0;
    assert.is(t.lookup(host), i, formatIPv4(host));
  }
  assert.is([...t.entries()].length, 10_000);
});

Lpm.run();
