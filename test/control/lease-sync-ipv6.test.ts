// LeaseSync's IPv6 half: flannel's flannel-v6 entries (route via <v6 subnet>::, neighbor, FDB) per remote lease,
// over the IPv6 underlay when both sides have one, else over the IPv4 underlay; removal and replacement.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import type { Lease, LeaseAttrs } from '../../src/control/lease';
import { LeaseSync } from '../../src/control/lease-sync';
import { nullLogger } from '../../src/control/log';
import { ForwardingTables } from '../../src/dataplane/tables';
import { parseCidr, parseIPv4, parseMac } from '../../src/wire/address';
import { parseCidr6, parseIPv6 } from '../../src/wire/address6';

const OWN = parseCidr('10.244.1.0/24');
const OWN6 = parseCidr6('fd00:10:244:1::/64');

function lease(n: number, over: Partial<LeaseAttrs> = {}, v4 = true, v6 = true): Lease {
  const l: Lease = {
    subnet: v4 ? parseCidr(`10.244.${n}.0/24`) : { address: 0, prefixLength: 0 },
    attrs: {
      publicIp: v4 ? parseIPv4(`192.0.2.${n}`) : 0,
      publicIpv6: parseIPv6(`2001:db8::${n}`),
      backendType: 'vxlan',
      backendData: v4 ? { vni: 1, vtepMac: 0x020000000000 + n } : undefined,
      backendV6Data: { vni: 1, vtepMac: 0x020000000100 + n },
      ...over,
    },
  };
  if (v6) l.subnet6 = parseCidr6(`fd00:10:244:${n.toString(16)}::/64`);
  return l;
}

const test = suite('lease sync, IPv6');

test('a dual-stack lease gets both sets of entries; the IPv6 ones over the IPv6 underlay', () => {
  const target = { tables: new ForwardingTables() };
  new LeaseSync(target, OWN, 'vxlan', nullLogger, undefined, { ownSubnet6: OWN6, underlay6: true }).applySnapshot([lease(1), lease(2)]);
  const t = target.tables;
  assert.is(t.routes.size, 1, 'own lease skipped');
  assert.is(t.routes6.size, 1);
  const route = t.routes6.lookup(parseIPv6('fd00:10:244:2::7'))!;
  assert.equal(route, { subnet: parseCidr6('fd00:10:244:2::/64'), gateway: parseIPv6('fd00:10:244:2::'), encap: 'vxlan' });
  assert.is(t.routes6.lookup(parseIPv6('fd00:10:244:1::7')), undefined);
  assert.is(t.neighbors6.get(parseIPv6('fd00:10:244:2::')), parseMac('02:00:00:00:01:02'));
  assert.is(t.fdb6.get(parseMac('02:00:00:00:01:02')), parseIPv6('2001:db8::2'));
  assert.is(t.fdb.get(parseMac('02:00:00:00:01:02')), undefined);
  assert.is(t.fdb.get(parseMac('02:00:00:00:00:02')), parseIPv4('192.0.2.2'));
  assert.ok(t.isKnownVtep6(parseIPv6('2001:db8::2')));
  assert.is(t.vtepOfAny(parseIPv6('2001:db8::1')), undefined);
});

test('without an IPv6 underlay socket, or a peer without PublicIPv6, IPv6 pods ride the IPv4 underlay (v6 MAC in fdb)', () => {
  for (const [underlay6, attrs] of [[false, {}], [true, { publicIpv6: undefined }]] as const) {
    const target = { tables: new ForwardingTables() };
    new LeaseSync(target, OWN, 'vxlan', nullLogger, undefined, { ownSubnet6: OWN6, underlay6 }).applySnapshot([lease(2, attrs)]);
    const t = target.tables;
    assert.is(t.fdb6.size, 0);
    assert.is(t.fdb.get(parseMac('02:00:00:00:01:02')), parseIPv4('192.0.2.2'));
    assert.is(t.routes6.size, 1);
  }
});

test('a single-stack IPv4 lease in a dual-stack network gets its IPv4 entries only; an IPv4-only agent ignores IPv6 halves', () => {
  const target = { tables: new ForwardingTables() };
  new LeaseSync(target, OWN, 'vxlan', nullLogger, undefined, { ownSubnet6: OWN6, underlay6: true }).applySnapshot([lease(3, { publicIpv6: undefined, backendV6Data: undefined }, true, false)]);
  assert.equal([target.tables.routes.size, target.tables.routes6.size, target.tables.neighbors6.size], [1, 0, 0]);
  const v4only = { tables: new ForwardingTables() };
  new LeaseSync(v4only, OWN, 'vxlan', nullLogger).applySnapshot([lease(2)]);
  assert.equal([v4only.tables.routes.size, v4only.tables.routes6.size, v4only.tables.fdb6.size], [1, 0, 0]);
});

test('IPv6-only: leases keyed by their IPv6 subnet (all share 0.0.0.0/0), own one skipped, removal undoes all three', () => {
  const target = { tables: new ForwardingTables() };
  const none = { address: 0, prefixLength: 0 };
  const sync = new LeaseSync(target, none, 'vxlan', nullLogger, undefined, { ownSubnet6: OWN6, underlay6: true });
  sync.applySnapshot([lease(1, {}, false), lease(2, {}, false), lease(3, {}, false)]);
  const t = target.tables;
  assert.equal([t.routes.size, t.routes6.size, t.neighbors6.size, t.fdb6.size], [0, 2, 2, 2]);
  sync.applyEvents([{ type: 'removed', lease: lease(2, {}, false) }]);
  assert.equal([t.routes6.size, t.neighbors6.size, t.fdb6.size], [1, 1, 1]);
  assert.not.ok(t.isKnownVtep6(parseIPv6('2001:db8::2')));
  // A restart with a new v6 VTEP MAC replaces the entries rather than stranding them.
  sync.applyEvents([{ type: 'added', lease: lease(3, { backendV6Data: { vni: 1, vtepMac: 0x0200000001ff } }, false) }]);
  assert.is(t.neighbors6.get(parseIPv6('fd00:10:244:3::')), 0x0200000001ff);
  assert.equal([...t.fdb6.keys()], [0x0200000001ff]);
});

test('DirectRouting takes the IPv4 half of an adjacent lease to the kernel; its IPv6 half stays encapsulated', () => {
  const target = { tables: new ForwardingTables() };
  const direct = (l: Lease): boolean => l.attrs.publicIp === parseIPv4('192.0.2.2');
  const sync = new LeaseSync(target, OWN, 'vxlan', nullLogger, direct, { ownSubnet6: OWN6, underlay6: false });
  sync.applySnapshot([lease(2), lease(3)]);
  const t = target.tables;
  assert.is(t.routes.size, 1, 'only the non-adjacent IPv4 subnet is encapsulated');
  assert.is(t.routes.lookup(parseIPv4('10.244.2.7')), undefined);
  assert.is(t.routes6.size, 2, 'both IPv6 subnets are');
  sync.applyEvents([{ type: 'removed', lease: lease(2) }]);
  assert.equal([t.routes.size, t.routes6.size, t.neighbors6.size], [1, 1, 1]);
});

test.run();
