import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { DEFAULT_PREFIX, type LeaseAttrs, formatLeaseAttrs, subnetKey } from '../../src/control/lease';
import { LeaseManager } from '../../src/control/lease-manager';
import { type LeaseRecord, recordFromKeyValue } from '../../src/control/lease-store';
import { type LeaseChecks, type LeaseEvent, LeaseValidator } from '../../src/control/lease-validator';
import { LeaseSync } from '../../src/control/lease-sync';
import type { LogFields, Logger } from '../../src/control/log';
import { parseNetworkConfig } from '../../src/control/network-config';
import { ForwardingTables } from '../../src/dataplane/tables';
import { MemoryStore } from '../../src/store/memory';
import { formatCidr, formatMac, parseCidr, parseIPv4, parseMac } from '../../src/wire/address';

const CONFIG = parseNetworkConfig('{"Network":"10.17.0.0/16","SubnetLen":24,"Backend":{"Type":"vxlan","VNI":1}}');
const OWN = parseCidr('10.17.1.0/24');
const OWN_MAC = parseMac('66:00:00:00:00:01');
const CHECKS: LeaseChecks = { config: CONFIG, ownSubnet: OWN, ownVtepMac: OWN_MAC };

interface LogRecord {
  level: string;
  msg: string;
  fields?: LogFields;
}

function recordingLogger(): Logger & { records: LogRecord[] } {
  const records: LogRecord[] = [];
  const at = (level: string) => (msg: string, fields?: LogFields) => records.push({ level, msg, fields });
  return { records, debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') };
}

function key(subnet: string): string {
  return `${DEFAULT_PREFIX}/subnets/${subnet.replace('/', '-')}`;
}

function vxlan(publicIp: string, mac: string, vni = 1): LeaseAttrs {
  return { publicIp: parseIPv4(publicIp), backendType: 'vxlan', backendData: { vni, vtepMac: parseMac(mac) } };
}

let revision = 100;
/** A store entry as the watch would read it; each call is a later write (a higher revision). */
function record(k: string, value: string | LeaseAttrs): LeaseRecord {
  const text = typeof value === 'string' ? value : formatLeaseAttrs(value);
  return recordFromKeyValue({ key: k, value: text, modRevision: ++revision, createRevision: revision, hasTtl: false }, 0, DEFAULT_PREFIX);
}

function show(events: LeaseEvent[]): string[] {
  return events.map((e) => `${e.type} ${formatCidr(e.lease.subnet)} ${formatMac(e.lease.attrs.backendData!.vtepMac!)}`);
}

const B = () => record(key('10.17.2.0/24'), vxlan('192.0.2.12', '66:00:00:00:00:02'));
const STRAY = () => record(key('10.17.2.0/25'), vxlan('192.0.2.99', '66:00:00:00:00:99'));

const checks = suite('control: lease validator');

checks('each rule refuses with its reason; valid leases pass', () => {
  const v = new LeaseValidator(recordingLogger(), CHECKS);
  const accepted = v.snapshot([
    B(),
    record(key('10.17.3.0/24'), '{"PublicIP":'),
    record(`${DEFAULT_PREFIX}/subnets/not-a-subnet`, vxlan('192.0.2.13', '66:00:00:00:00:13')),
    record(key('10.17.4.0/24'), { publicIp: parseIPv4('192.0.2.14'), backendType: 'host-gw' }),
    record(key('10.17.5.0/24'), vxlan('192.0.2.15', '66:00:00:00:00:15', 2)),
    record(key('10.17.6.0/24'), { publicIp: parseIPv4('192.0.2.16'), backendType: 'vxlan', backendData: { vni: 1 } }),
    record(key('10.18.7.0/24'), vxlan('192.0.2.17', '66:00:00:00:00:17')),
    record(key('10.17.1.128/25'), vxlan('192.0.2.18', '66:00:00:00:00:18')),
    record(key('10.17.2.0/25'), vxlan('192.0.2.19', '66:00:00:00:00:19')),
    record(key('10.17.8.0/23'), vxlan('192.0.2.20', '66:00:00:00:00:20')),
    record(key('10.17.10.0/25'), vxlan('192.0.2.21', '66:00:00:00:00:21')),
    record(key('10.17.11.0/24'), vxlan('192.0.2.22', '66:00:00:00:00:02')),
    record(key('10.17.12.0/24'), vxlan('192.0.2.23', '66:00:00:00:00:01')),
    record(key('10.17.13.0/24'), vxlan('192.0.2.24', '66:00:00:00:00:24')),
    record(key('10.17.1.0/24'), vxlan('192.0.2.11', '66:00:00:00:00:01')), // our own lease passes (consumers skip it)
  ]);
  assert.equal(accepted.map((l) => formatCidr(l.subnet)).sort(), ['10.17.1.0/24', '10.17.13.0/24', '10.17.2.0/24']);
  const reasons = Object.fromEntries(v.refused.map((r) => [r.key.slice(`${DEFAULT_PREFIX}/subnets/`.length), r.reason]));
  assert.equal(reasons, {
    '10.17.3.0-24': reasons['10.17.3.0-24'],
    'not-a-subnet': 'the key names no subnet (expected <prefix>/subnets/A.B.C.D-LEN, optionally followed by &IPV6-LEN)',
    '10.17.4.0-24': 'backend type "host-gw" is not ours ("vxlan")',
    '10.17.5.0-24': 'VNI 2 is not ours (1)',
    '10.17.6.0-24': 'a vxlan lease without a VtepMAC',
    '10.18.7.0-24': '10.18.7.0/24 is outside the network 10.17.0.0/16',
    '10.17.1.128-25': 'overlaps our subnet 10.17.1.0/24',
    '10.17.2.0-25': 'overlaps 10.17.2.0/24 of 192.0.2.12',
    '10.17.8.0-23': 'a /23, but the network\'s SubnetLen is 24',
    '10.17.10.0-25': 'a /25, but the network\'s SubnetLen is 24',
    '10.17.11.0-24': 'VTEP MAC 66:00:00:00:00:02 is already used by 10.17.2.0/24 of 192.0.2.12',
    '10.17.12.0-24': 'VTEP MAC 66:00:00:00:00:01 is ours',
  });
  assert.match(reasons['10.17.3.0-24'], /^lease value is not valid JSON/);
});

checks('a PublicIP that cannot be an underlay address, or that is ours, is refused; a PublicIP shared by two others is not', () => {
  const v = new LeaseValidator(recordingLogger(), { ...CHECKS, ownPublicIp: parseIPv4('192.0.2.11') });
  const accepted = v.snapshot([
    record(key('10.17.2.0/24'), vxlan('127.0.0.1', '66:00:00:00:00:02')),
    record(key('10.17.3.0/24'), vxlan('0.0.0.0', '66:00:00:00:00:03')),
    record(key('10.17.4.0/24'), vxlan('0.1.2.3', '66:00:00:00:00:04')),
    record(key('10.17.5.0/24'), vxlan('224.0.0.5', '66:00:00:00:00:05')),
    record(key('10.17.6.0/24'), vxlan('255.255.255.255', '66:00:00:00:00:06')),
    record(key('10.17.7.0/24'), vxlan('240.0.0.1', '66:00:00:00:00:07')),
    record(key('10.17.8.0/24'), vxlan('192.0.2.11', '66:00:00:00:00:08')),
    record(key('10.17.9.0/24'), vxlan('192.0.2.19', '66:00:00:00:00:09')),
    record(key('10.17.10.0/24'), vxlan('192.0.2.19', '66:00:00:00:00:10')), // a real node's address twice: harmless
    record(key('10.17.11.0/24'), vxlan('223.255.255.254', '66:00:00:00:00:11')),
    record(key('10.17.1.0/24'), vxlan('192.0.2.11', '66:00:00:00:00:01')), // our own lease passes (consumers skip it)
  ]);
  assert.equal(accepted.map((l) => formatCidr(l.subnet)).sort(), ['10.17.1.0/24', '10.17.10.0/24', '10.17.11.0/24', '10.17.9.0/24']);
  const reasons = Object.fromEntries(v.refused.map((r) => [r.key.slice(`${DEFAULT_PREFIX}/subnets/`.length), r.reason]));
  assert.equal(reasons, {
    '10.17.2.0-24': 'PublicIP 127.0.0.1 is a loopback address (127.0.0.0/8), not a node\'s underlay address',
    '10.17.3.0-24': 'PublicIP 0.0.0.0 is the unspecified address, not a node\'s underlay address',
    '10.17.4.0-24': 'PublicIP 0.1.2.3 is a "this network" address (0.0.0.0/8), not a node\'s underlay address',
    '10.17.5.0-24': 'PublicIP 224.0.0.5 is a multicast address (224.0.0.0/4), not a node\'s underlay address',
    '10.17.6.0-24': 'PublicIP 255.255.255.255 is the broadcast address, not a node\'s underlay address',
    '10.17.7.0-24': 'PublicIP 240.0.0.1 is a reserved address (240.0.0.0/4), not a node\'s underlay address',
    '10.17.8.0-24': 'PublicIP 192.0.2.11 names this node\'s own address',
  });
});

checks('a host-gw lease naming a loopback PublicIP is refused too', () => {
  const config = parseNetworkConfig('{"Network":"10.17.0.0/16","Backend":{"Type":"host-gw"}}');
  const v = new LeaseValidator(recordingLogger(), { config, ownSubnet: OWN, ownPublicIp: parseIPv4('192.0.2.11') });
  const events = v.put(record(key('10.17.2.0/24'), { publicIp: parseIPv4('127.0.0.1'), backendType: 'host-gw' }));
  assert.equal(events, []);
  assert.equal(v.refused.map((r) => r.reason), ['PublicIP 127.0.0.1 is a loopback address (127.0.0.0/8), not a node\'s underlay address']);
});

checks('a shorter lease covering an accepted one is refused as overlapping it', () => {
  const v = new LeaseValidator(recordingLogger(), CHECKS);
  v.snapshot([B()]);
  const events = v.put(record(key('10.17.2.0/23'), vxlan('192.0.2.30', '66:00:00:00:00:30')));
  assert.equal(events, []);
  assert.equal(v.refused.map((r) => r.reason), ['overlaps 10.17.2.0/24 of 192.0.2.12']);
});

checks('a conflict goes to the lease accepted first; the other is accepted when the first leaves', () => {
  const log = recordingLogger();
  const v = new LeaseValidator(log, CHECKS);
  v.snapshot([B()]);
  const clone = record(key('10.17.9.0/24'), vxlan('192.0.2.19', '66:00:00:00:00:02')); // a cloned node: B's MAC
  assert.equal(v.put(clone), []);
  assert.equal(v.refused.map((r) => r.reason), ['VTEP MAC 66:00:00:00:00:02 is already used by 10.17.2.0/24 of 192.0.2.12']);
  assert.equal(show(v.delete(key('10.17.2.0/24'))), ['removed 10.17.2.0/24 66:00:00:00:00:02', 'added 10.17.9.0/24 66:00:00:00:00:02']);
  assert.equal(v.refused, []);
  assert.ok(log.records.some((r) => r.level === 'info' && r.msg === 'accepting a lease refused before' && r.fields?.key === key('10.17.9.0/24')));
});

checks('a lease changing to a conflicting value is taken out, and what it held goes to the one waiting', () => {
  const v = new LeaseValidator(recordingLogger(), CHECKS);
  v.snapshot([B(), record(key('10.17.3.0/24'), vxlan('192.0.2.13', '66:00:00:00:00:03'))]);
  v.put(record(key('10.17.9.0/24'), vxlan('192.0.2.19', '66:00:00:00:00:03'))); // refused: 10.17.3.0's MAC
  // 10.17.3.0 restarts with B's MAC: refused now (B was first), and its old MAC goes to 10.17.9.0.
  const events = v.put(record(key('10.17.3.0/24'), vxlan('192.0.2.13', '66:00:00:00:00:02')));
  assert.equal(show(events), ['removed 10.17.3.0/24 66:00:00:00:00:03', 'added 10.17.9.0/24 66:00:00:00:00:03']);
  assert.equal(v.refused.map((r) => r.key), [key('10.17.3.0/24')]);
});

checks('snapshot conflicts resolve the same whatever the listing order: the right length, then the older write', () => {
  const older = record(key('10.17.5.0/24'), vxlan('192.0.2.15', '66:00:00:00:00:05'));
  const newer = record(key('10.17.6.0/24'), vxlan('192.0.2.16', '66:00:00:00:00:05'));
  const stray = STRAY();
  const b = B();
  for (const order of [[older, newer, stray, b], [b, stray, newer, older], [stray, newer, b, older]]) {
    const v = new LeaseValidator(recordingLogger(), CHECKS);
    const accepted = v.snapshot(order);
    assert.equal(accepted.map((l) => formatCidr(l.subnet)).sort(), ['10.17.2.0/24', '10.17.5.0/24']);
    assert.equal(v.refused.map((r) => r.reason), ['overlaps 10.17.2.0/24 of 192.0.2.12', 'VTEP MAC 66:00:00:00:00:05 is already used by 10.17.5.0/24 of 192.0.2.15']);
  }
});

checks('a resync keeps the incumbent even when the other lease is the older write', () => {
  const v = new LeaseValidator(recordingLogger(), CHECKS);
  const first = record(key('10.17.6.0/24'), vxlan('192.0.2.16', '66:00:00:00:00:05'));
  v.snapshot([first]);
  const older = { ...record(key('10.17.5.0/24'), vxlan('192.0.2.15', '66:00:00:00:00:05')), revision: 1 };
  assert.equal(v.snapshot([older, first]).map((l) => formatCidr(l.subnet)), ['10.17.6.0/24']);
});

checks('one log line per key and reason: renewals and resyncs of a refused lease say nothing new', () => {
  const log = recordingLogger();
  const v = new LeaseValidator(log, CHECKS);
  v.snapshot([B(), STRAY()]);
  v.put(STRAY());
  v.put(STRAY());
  v.snapshot([B(), STRAY()]);
  const refusals = () => log.records.filter((r) => r.msg === 'refusing a lease');
  assert.is(refusals().length, 1);
  assert.equal(refusals()[0].fields, { key: key('10.17.2.0/25'), reason: 'overlaps 10.17.2.0/24 of 192.0.2.12' });
  v.delete(key('10.17.2.0/24')); // B leaves: the stray lease is now refused for its length, said once more
  assert.equal(refusals().map((r) => r.fields?.reason), ['overlaps 10.17.2.0/24 of 192.0.2.12', "a /25, but the network's SubnetLen is 24"]);
});

checks('without checks only what does not parse is refused (the watch for tools, before a config is known)', () => {
  const v = new LeaseValidator(recordingLogger());
  const accepted = v.snapshot([B(), STRAY(), record(key('10.17.3.0/24'), 'garbage')]);
  assert.is(accepted.length, 2);
  assert.equal(v.refused.map((r) => r.key), [key('10.17.3.0/24')]);
});

checks('a duplicate under another spelling of the key is refused and takes part in no conflict, whatever its revision', () => {
  const v = new LeaseValidator(recordingLogger(), CHECKS);
  const dir = record(`${DEFAULT_PREFIX}/subnets/dup/10.17.13.0-24`, vxlan('192.0.2.66', '66:00:00:00:00:66'));
  const zeros = record(`${DEFAULT_PREFIX}/subnets/010.017.013.000-24`, vxlan('192.0.2.67', '66:00:00:00:00:13'));
  const real = record(key('10.17.13.0/24'), vxlan('192.0.2.24', '66:00:00:00:00:13')); // the newest write
  assert.equal(v.snapshot([zeros, dir, real]).map((l) => formatCidr(l.subnet)), ['10.17.13.0/24']);
  assert.equal(v.refused, [
    { key: `${DEFAULT_PREFIX}/subnets/010.017.013.000-24`, reason: `not the canonical key of 10.17.13.0/24 (expected ${key('10.17.13.0/24')})` },
    { key: `${DEFAULT_PREFIX}/subnets/dup/10.17.13.0-24`, reason: `not the canonical key of 10.17.13.0/24 (expected ${key('10.17.13.0/24')})` },
  ]);
  assert.equal(v.put(record(key('10.17.13.0/24'), vxlan('192.0.2.24', '66:00:00:00:00:13'))).length, 1, 'a rewrite of the winner keeps it');
  assert.equal(v.delete(key('10.17.13.0/24')).map((e) => e.type), ['removed'], 'the duplicates do not take its place');
  assert.is(v.leases.length, 0);
  const dual = record(`${key('10.17.14.0/24')}&fc00::-64`, vxlan('192.0.2.25', '66:00:00:00:00:25'));
  assert.equal(v.put(dual).map((e) => e.type), ['added'], "flannel's dual-stack key is canonical");
});

checks('a lease naming our node at another subnet is refused; without our name in the checks it is a lease like any other', () => {
  const forged = () => record(key('10.17.4.0/24'), { ...vxlan('192.0.2.66', '66:00:00:00:00:66'), nodeName: 'node-a' });
  const v = new LeaseValidator(recordingLogger(), { ...CHECKS, ownNodeName: 'node-a' });
  const ours = record(key('10.17.1.0/24'), { ...vxlan('192.0.2.11', '66:00:00:00:00:01'), nodeName: 'node-a' });
  assert.equal(v.snapshot([forged(), ours, B()]).map((l) => formatCidr(l.subnet)).sort(), ['10.17.1.0/24', '10.17.2.0/24']);
  assert.equal(v.refused, [{ key: key('10.17.4.0/24'), reason: 'names this node (node-a), whose lease is 10.17.1.0/24' }]);
  assert.equal(new LeaseValidator(recordingLogger(), CHECKS).snapshot([forged()]).length, 1);
});

checks.run();

// ---- the validator in front of the tables -----------------------------------------------------------

const tables = suite('control: leases reach the tables only through the validator');

/** The tables an agent at 10.17.1.0/24 builds from the store, through the watch (with checks) and LeaseSync. */
async function follow(store: MemoryStore): Promise<{ t: ForwardingTables; refused: () => string[]; close: () => void }> {
  const target = { tables: new ForwardingTables() };
  const log = recordingLogger();
  const sync = new LeaseSync(target, OWN, 'vxlan', log);
  const m = new LeaseManager({ store, config: CONFIG, log });
  const w = await m.watchLeases({ onSnapshot: (l) => sync.applySnapshot(l), onEvents: (e) => sync.applyEvents(e) }, { checks: CHECKS });
  return { t: target.tables, refused: () => w.refused.map((r) => `${r.key} ${r.reason}`), close: () => w.close() };
}

async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) await new Promise((resolve) => setImmediate(resolve));
}

function assertBReachable(t: ForwardingTables, when: string): void {
  assert.is(t.routes.lookup(parseIPv4('10.17.2.7'))?.gateway, parseIPv4('10.17.2.0'), `${when}: route to B`);
  assert.is(t.neighbors.get(parseIPv4('10.17.2.0')), parseMac('66:00:00:00:00:02'), `${when}: B's neighbor entry`);
  assert.is(t.fdb.get(parseMac('66:00:00:00:00:02')), parseIPv4('192.0.2.12'), `${when}: B's FDB entry`);
  assert.ok(t.isKnownVtep(parseIPv4('192.0.2.12')), `${when}: B's VTEP known`);
}

tables('a stray /25 inside B\'s /24 (with a TTL) never touches B\'s entries, before, during or after it expires', async () => {
  let now = 1_700_000_000_000;
  const store = new MemoryStore({ now: () => now, sweepIntervalMs: 0 });
  try {
    const bKey = subnetKey(DEFAULT_PREFIX, parseCidr('10.17.2.0/24'));
    await store.put(bKey, formatLeaseAttrs(vxlan('192.0.2.12', '66:00:00:00:00:02')), { ttlSeconds: 3600 });
    const f = await follow(store);
    try {
      assertBReachable(f.t, 'at start');
      await store.put(key('10.17.2.0/25'), formatLeaseAttrs(vxlan('192.0.2.99', '66:00:00:00:00:99')), { ttlSeconds: 5 });
      await settle();
      assertBReachable(f.t, 'with the stray lease');
      assert.is(f.t.routes.size, 1);
      assert.is(f.t.fdb.get(parseMac('66:00:00:00:00:99')), undefined, 'no FDB entry for the stray lease');
      assert.equal(f.refused(), [`${key('10.17.2.0/25')} overlaps 10.17.2.0/24 of 192.0.2.12`]);
      now += 6000;
      store.expire();
      await settle();
      assert.is(await store.get(key('10.17.2.0/25')), undefined, 'the stray lease expired');
      assertBReachable(f.t, 'after the stray lease expired');
      assert.equal(f.refused(), []);
    } finally {
      f.close();
    }
  } finally {
    await store.close();
  }
});

tables('a stray lease listed at start (before B in key order) is refused and B is programmed', async () => {
  const store = new MemoryStore({ sweepIntervalMs: 0 });
  try {
    await store.put(key('10.17.2.0/25'), formatLeaseAttrs(vxlan('192.0.2.99', '66:00:00:00:00:99')));
    await store.put(key('10.17.2.0/24'), formatLeaseAttrs(vxlan('192.0.2.12', '66:00:00:00:00:02')));
    const f = await follow(store);
    try {
      assertBReachable(f.t, 'at start');
      await store.delete(key('10.17.2.0/25'));
      await settle();
      assertBReachable(f.t, 'after the stray lease was deleted');
    } finally {
      f.close();
    }
  } finally {
    await store.close();
  }
});

tables('a VTEP MAC conflict stays with the older key after the winner is rewritten (renewed, restarted): every fresh listing agrees', async () => {
  const store = new MemoryStore({ sweepIntervalMs: 0 });
  try {
    const winner = key('10.17.5.0/24');
    await store.put(winner, formatLeaseAttrs(vxlan('192.0.2.15', '66:00:00:00:00:05')), { ttlSeconds: 600 });
    await store.put(key('10.17.6.0/24'), formatLeaseAttrs(vxlan('192.0.2.16', '66:00:00:00:00:05')), { ttlSeconds: 600 });
    const before = await follow(store);
    before.close();
    assert.equal(before.refused(), [`${key('10.17.6.0/24')} VTEP MAC 66:00:00:00:00:05 is already used by 10.17.5.0/24 of 192.0.2.15`]);
    // The winner renews (a newer modRevision than the duplicate's); an agent that starts now must still pick it.
    const kv = (await store.get(winner))!;
    await store.put(winner, kv.value, { ttlSeconds: 600, ifModRevision: kv.modRevision });
    const after = await follow(store);
    try {
      assert.equal(after.refused(), before.refused());
      assert.is(after.t.fdb.get(parseMac('66:00:00:00:00:05')), parseIPv4('192.0.2.15'), 'the MAC still leads to the older key');
    } finally {
      after.close();
    }
  } finally {
    await store.close();
  }
});

tables.run();
