import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { LeaseSync } from '../../src/control/lease-sync';
import type { Lease } from '../../src/control/lease';
import { nullLogger } from '../../src/control/log';
import { ForwardingTables } from '../../src/dataplane/tables';
import { parseCidr, parseIPv4, parseMac } from '../../src/wire/address';

function lease(subnet: string, publicIp: string, mac?: string, backendType = 'vxlan'): Lease {
  return {
    subnet: parseCidr(subnet),
    attrs: { publicIp: parseIPv4(publicIp), backendType, backendData: mac ? { vni: 1, vtepMac: parseMac(mac) } : {} },
  };
}

const own = parseCidr('10.17.1.0/24');
const Sync = suite('lease sync');

Sync('vxlan: one route, one neighbor, one FDB entry per remote lease; own lease and other backends ignored', () => {
  const target = { tables: new ForwardingTables() };
  const sync = new LeaseSync(target, own, 'vxlan', nullLogger);
  sync.applySnapshot([
    lease('10.17.1.0/24', '192.0.2.11', '02:00:00:00:00:01'),
    lease('10.17.2.0/24', '192.0.2.12', '02:00:00:00:00:02'),
    lease('10.17.3.0/24', '192.0.2.13', undefined, 'host-gw'),
  ]);
  const t = target.tables;
  assert.is(t.routes.size, 1);
  const route = t.routes.lookup(parseIPv4('10.17.2.7'))!;
  assert.is(route.gateway, parseIPv4('10.17.2.0'));
  assert.is(t.neighbors.get(parseIPv4('10.17.2.0')), parseMac('02:00:00:00:00:02'));
  assert.is(t.fdb.get(parseMac('02:00:00:00:00:02')), parseIPv4('192.0.2.12'));
  assert.ok(t.isKnownVtep(parseIPv4('192.0.2.12')));
  assert.not.ok(t.isKnownVtep(parseIPv4('192.0.2.11')));
});

Sync('removal takes all three entries away; a changed VTEP MAC replaces the old entries', () => {
  const target = { tables: new ForwardingTables() };
  const sync = new LeaseSync(target, own, 'vxlan', nullLogger);
  sync.applyEvents([{ type: 'added', lease: lease('10.17.2.0/24', '192.0.2.12', '02:00:00:00:00:02') }]);
  sync.applyEvents([{ type: 'added', lease: lease('10.17.2.0/24', '192.0.2.12', '02:00:00:00:00:22') }]);
  const t = target.tables;
  assert.is(t.fdb.size, 1);
  assert.is(t.neighbors.get(parseIPv4('10.17.2.0')), parseMac('02:00:00:00:00:22'));
  sync.applyEvents([{ type: 'removed', lease: lease('10.17.2.0/24', '192.0.2.12') }]);
  assert.is(t.routes.size, 0);
  assert.is(t.neighbors.size, 0);
  assert.is(t.fdb.size, 0);
  assert.not.ok(t.isKnownVtep(parseIPv4('192.0.2.12')));
});

Sync('a snapshot after a resync removes what vanished meanwhile and keeps the rest', () => {
  const target = { tables: new ForwardingTables() };
  const sync = new LeaseSync(target, own, 'ipip', nullLogger);
  sync.applySnapshot([lease('10.17.2.0/24', '192.0.2.12', undefined, 'ipip'), lease('10.17.3.0/24', '192.0.2.13', undefined, 'ipip')]);
  sync.applySnapshot([lease('10.17.3.0/24', '192.0.2.13', undefined, 'ipip'), lease('10.17.4.0/24', '192.0.2.14', undefined, 'ipip')]);
  const t = target.tables;
  assert.equal([...t.routes.entries()].map(([, r]) => r.gateway).sort(), [parseIPv4('192.0.2.13'), parseIPv4('192.0.2.14')]);
  assert.not.ok(t.isKnownVtep(parseIPv4('192.0.2.12')));
});

Sync.run();
