import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { MemoryStore } from '../../src/store/memory';
import type { ListResult, PutOptions, Store, Watch, WatchHandlers } from '../../src/store/store';
import { DEFAULT_PREFIX, Lease, LeaseAttrs, formatLeaseAttrs, parseLeaseAttrs, subnetKey } from '../../src/control/lease';
import { LeaseEvent, LeaseManager, LeaseManagerOptions, NetworkFullError, Timers } from '../../src/control/lease-manager';
import { parseNetworkConfig } from '../../src/control/network-config';
import type { LogFields, Logger } from '../../src/control/log';
import { formatCidr, parseCidr, parseIPv4, parseMac } from '../../src/wire/address';

// ---- test fixtures ----------------------------------------------------------------------------------

const CONFIG_JSON = '{"Network":"10.17.0.0/16","SubnetLen":24,"Backend":{"Type":"vxlan","VNI":1}}';
const CONFIG = parseNetworkConfig(CONFIG_JSON);

/** A clock and timers the test moves by hand; the MemoryStore reads the same clock for its TTLs. */
class FakeClock implements Timers {
  now = 1_700_000_000_000;
  private nextId = 1;
  private pending = new Map<number, { at: number; fn: () => void }>();

  setTimeout(fn: () => void, ms: number): unknown {
    const id = this.nextId++;
    this.pending.set(id, { at: this.now + ms, fn });
    return id;
  }

  clearTimeout(handle: unknown): void {
    this.pending.delete(handle as number);
  }

  get timerCount(): number {
    return this.pending.size;
  }

  /** Moves time forward, firing due timers in order and letting the promises they start settle. */
  async advance(ms: number): Promise<void> {
    const end = this.now + ms;
    for (;;) {
      let next: [number, { at: number; fn: () => void }] | undefined;
      for (const entry of this.pending) if (entry[1].at <= end && (!next || entry[1].at < next[1].at)) next = entry;
      if (!next) break;
      this.now = Math.max(this.now, next[1].at);
      this.pending.delete(next[0]);
      next[1].fn();
      await settle();
    }
    this.now = end;
    await settle();
  }
}

/** Lets every pending promise chain and queued watch delivery run. */
async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) await new Promise((resolve) => setImmediate(resolve));
}

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

/** A deterministic random source (mulberry32), so a failing race can be replayed. */
function seeded(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function vxlanAttrs(publicIp: string, mac = '66:00:00:00:00:01'): LeaseAttrs {
  return { publicIp: parseIPv4(publicIp), backendType: 'vxlan', backendData: { vni: 1, vtepMac: parseMac(mac) } };
}

function key(subnet: string): string {
  return subnetKey(DEFAULT_PREFIX, parseCidr(subnet));
}

async function withStore(fn: (store: MemoryStore, clock: FakeClock) => Promise<void>): Promise<void> {
  const clock = new FakeClock();
  const store = new MemoryStore({ now: () => clock.now, sweepIntervalMs: 0 });
  try {
    await fn(store, clock);
  } finally {
    await store.close();
  }
}

function manager(store: Store, clock: FakeClock, extra: Partial<LeaseManagerOptions> = {}): LeaseManager {
  return new LeaseManager({ store, config: CONFIG, now: () => clock.now, timers: clock, random: seeded(1), ...extra });
}

/** uvu has no async throws: awaits the promise and matches its rejection. */
async function rejects(promise: Promise<unknown>, expected: RegExp): Promise<void> {
  try {
    await promise;
  } catch (err) {
    assert.match((err as Error).message, expected);
    return;
  }
  assert.unreachable(`resolved; expected a rejection matching ${expected}`);
}

async function valueAt(store: Store, k: string): Promise<LeaseAttrs | undefined> {
  const kv = await store.get(k);
  return kv && parseLeaseAttrs(kv.value);
}

// ---- acquire ---------------------------------------------------------------------------------------

const acquire = suite('control: lease manager acquire');

acquire('reuses the lease whose PublicIP is ours, updating its attrs and TTL, before the previous subnet', () =>
  withStore(async (store, clock) => {
    await store.put(key('10.17.9.0/24'), formatLeaseAttrs(vxlanAttrs('192.0.2.1', '66:00:00:00:00:99')), { ttlSeconds: 60 });
    await store.put(key('10.17.3.0/24'), formatLeaseAttrs(vxlanAttrs('192.0.2.2')), { ttlSeconds: 60 });
    const m = manager(store, clock);
    const lease = await m.acquire(vxlanAttrs('192.0.2.1'), { previousSubnet: parseCidr('10.17.5.0/24') });
    assert.is(formatCidr(lease.subnet), '10.17.9.0/24');
    assert.is(lease.expiresAt, clock.now + 86400 * 1000);
    assert.equal(await valueAt(store, key('10.17.9.0/24')), vxlanAttrs('192.0.2.1'), 'new VTEP MAC written');
    assert.is((await store.get(key('10.17.9.0/24')))?.ttlSeconds, 86400);
    assert.is(await store.get(key('10.17.5.0/24')), undefined, 'previous subnet untouched');
  }),
);

acquire('a reservation (no TTL) of our PublicIP stays a reservation', () =>
  withStore(async (store, clock) => {
    await store.put(key('10.17.9.0/24'), formatLeaseAttrs(vxlanAttrs('192.0.2.1')));
    const lease = await manager(store, clock).acquire(vxlanAttrs('192.0.2.1'));
    assert.is(formatCidr(lease.subnet), '10.17.9.0/24');
    assert.is(lease.expiresAt, undefined);
    assert.is((await store.get(key('10.17.9.0/24')))?.ttlSeconds, undefined);
  }),
);

acquire('a lease of our PublicIP that no longer fits the config is deleted, then the previous subnet is used', () =>
  withStore(async (store, clock) => {
    // A /25 from an older config with SubnetLen 25.
    await store.put(key('10.17.9.0/25'), formatLeaseAttrs(vxlanAttrs('192.0.2.1')), { ttlSeconds: 60 });
    const log = recordingLogger();
    const lease = await manager(store, clock, { log }).acquire(vxlanAttrs('192.0.2.1'), { previousSubnet: parseCidr('10.17.9.0/24') });
    assert.is(formatCidr(lease.subnet), '10.17.9.0/24');
    assert.is(await store.get(key('10.17.9.0/25')), undefined);
    assert.ok(log.records.some((r) => r.level === 'warn' && /does not fit the network config/.test(r.msg)));
  }),
);

acquire('uses the previous subnet when free; else a random free one when it is taken or outside the config', () =>
  withStore(async (store, clock) => {
    const m = manager(store, clock, { random: () => 0 });
    const first = await m.acquire(vxlanAttrs('192.0.2.1'), { previousSubnet: parseCidr('10.17.77.0/24') });
    assert.is(formatCidr(first.subnet), '10.17.77.0/24');
    // Taken by 192.0.2.1 now: 192.0.2.2 gets the first free subnet (random 0).
    const second = await m.acquire(vxlanAttrs('192.0.2.2'), { previousSubnet: parseCidr('10.17.77.0/24') });
    assert.is(formatCidr(second.subnet), '10.17.1.0/24');
    // Outside the network, wrong length, or below SubnetMin: ignored.
    for (const [ip, previous, expected] of [
      ['192.0.2.3', '10.18.4.0/24', '10.17.2.0/24'],
      ['192.0.2.4', '10.17.8.0/25', '10.17.3.0/24'],
      ['192.0.2.5', '10.17.0.0/24', '10.17.4.0/24'],
    ]) {
      const lease = await m.acquire(vxlanAttrs(ip), { previousSubnet: parseCidr(previous) });
      assert.is(formatCidr(lease.subnet), expected, previous);
    }
  }),
);

acquire('random choice spans SubnetMin..SubnetMax and skips leased (and overlapping) subnets', () =>
  withStore(async (store, clock) => {
    await store.put(key('10.17.255.0/24'), formatLeaseAttrs(vxlanAttrs('192.0.2.9')));
    // A foreign lease of another length covering 10.17.252.0-10.17.253.255.
    await store.put(key('10.17.252.0/23'), formatLeaseAttrs(vxlanAttrs('192.0.2.8')));
    const last = await manager(store, clock, { random: () => 0.999999 }).acquire(vxlanAttrs('192.0.2.1'));
    assert.is(formatCidr(last.subnet), '10.17.254.0/24');
    const next = await manager(store, clock, { random: () => 0.999999 }).acquire(vxlanAttrs('192.0.2.2'));
    assert.is(formatCidr(next.subnet), '10.17.251.0/24');
  }),
);

acquire('full network: an error that says what to do', () =>
  withStore(async (store, clock) => {
    for (let i = 1; i <= 255; i++) await store.put(key(`10.17.${i}.0/24`), formatLeaseAttrs(vxlanAttrs(`198.51.100.${i}`)));
    const m = manager(store, clock);
    try {
      await m.acquire(vxlanAttrs('192.0.2.1'));
      assert.unreachable('acquired in a full network');
    } catch (err) {
      assert.instance(err, NetworkFullError);
      assert.is(
        (err as Error).message,
        'network 10.17.0.0/16 has no free /24 between 10.17.1.0 and 10.17.255.0 (255 leases); widen Network or remove stale leases',
      );
    }
    // Yet a node whose PublicIP holds a lease still gets it back.
    const again = await m.acquire(vxlanAttrs('198.51.100.7'));
    assert.is(formatCidr(again.subnet), '10.17.7.0/24');
  }),
);

acquire('two managers that pick the same subnet: one wins, the other retries and gets another', () =>
  withStore(async (store, clock) => {
    const a = manager(store, clock, { random: () => 0 });
    const b = manager(store, clock, { random: () => 0 });
    const [la, lb] = await Promise.all([a.acquire(vxlanAttrs('192.0.2.1')), b.acquire(vxlanAttrs('192.0.2.2'))]);
    assert.equal([formatCidr(la.subnet), formatCidr(lb.subnet)].sort(), ['10.17.1.0/24', '10.17.2.0/24']);
    const holders = new Map<string, string>();
    for (const l of (await a.listLeases()).leases) holders.set(formatCidr(l.subnet), String(l.attrs.publicIp));
    assert.is(holders.size, 2);
    assert.is(holders.get(formatCidr(la.subnet)), String(parseIPv4('192.0.2.1')));
  }),
);

acquire('50 concurrent acquires from two managers on one store: no subnet given twice', () =>
  withStore(async (store, clock) => {
    const managers = [manager(store, clock, { random: seeded(7) }), manager(store, clock, { random: seeded(8) })];
    const leases = await Promise.all(
      Array.from({ length: 50 }, (_, i) => managers[i % 2].acquire(vxlanAttrs(`198.51.100.${i + 1}`))),
    );
    const subnets = new Set(leases.map((l) => formatCidr(l.subnet)));
    assert.is(subnets.size, 50, 'distinct subnets');
    const stored = (await managers[0].listLeases()).leases;
    assert.is(stored.length, 50, 'one key per node');
    for (const lease of leases) {
      const held = stored.find((s) => s.subnet.address === lease.subnet.address);
      assert.is(held?.attrs.publicIp, lease.attrs.publicIp, 'the store agrees on who holds each subnet');
    }
  }),
);

acquire('without a config option, acquire reads <prefix>/config', () =>
  withStore(async (store, clock) => {
    const m = new LeaseManager({ store, prefix: '/vxt/net', now: () => clock.now, timers: clock, random: () => 0 });
    await rejects(m.acquire(vxlanAttrs('192.0.2.1')), /no network config at \/vxt\/net\/config: run "vxtun init --network CIDR" first/);
    await m.writeNetworkConfig('{"Network":"10.99.0.0/16","Backend":{"Type":"ipip"}}');
    const lease = await m.acquire({ publicIp: parseIPv4('192.0.2.1'), backendType: 'ipip' });
    assert.is(formatCidr(lease.subnet), '10.99.1.0/24');
    assert.is((await store.get('/vxt/net/subnets/10.99.1.0-24'))?.value, '{"PublicIP":"192.0.2.1","BackendType":"ipip"}');
  }),
);

acquire.run();

// ---- network config in the store --------------------------------------------------------------------

const config = suite('control: lease manager network config');

config('read: missing, malformed, valid', () =>
  withStore(async (store, clock) => {
    const m = manager(store, clock);
    await rejects(m.readNetworkConfig(), /^no network config at \/coreos.com\/network\/config: run "vxtun init --network CIDR" first$/);
    await store.put('/coreos.com/network/config', '{"Network":"10.17.0.0/16","SubnetLen":31,"Backend":{"Type":"vxlan"}}');
    await rejects(m.readNetworkConfig(), /^network config at \/coreos.com\/network\/config: SubnetLen 31 is too long/);
    await store.put('/coreos.com/network/config', '{"Network":"10.17.0.0/16"}');
    await rejects(m.readNetworkConfig(), /network config at \/coreos.com\/network\/config: unknown backend type "udp"/);
    await store.put('/coreos.com/network/config', CONFIG_JSON);
    assert.equal(await m.readNetworkConfig(), CONFIG);
  }),
);

config('write: checks first, refuses to replace a different config unless asked, accepts the same one again', () =>
  withStore(async (store, clock) => {
    const m = manager(store, clock);
    await rejects(m.writeNetworkConfig('{"Network":"10.17.0.0/16","Backend":{"Type":"udp"}}'), /unknown backend type "udp"/);
    assert.is(await store.get('/coreos.com/network/config'), undefined);
    await m.writeNetworkConfig(CONFIG_JSON);
    await m.writeNetworkConfig(CONFIG_JSON);
    const other = '{"Network":"10.18.0.0/16","Backend":{"Type":"vxlan"}}';
    await rejects(m.writeNetworkConfig(other), /a different network config already exists at \/coreos.com\/network\/config/);
    await m.writeNetworkConfig(other, { replace: true });
    assert.is((await store.get('/coreos.com/network/config'))?.value, other);
  }),
);

config.run();

// ---- renew and keep ----------------------------------------------------------------------------------

/** Delegates to a MemoryStore; writes fail while `failing` is set, as if the store were unreachable. */
class FlakyStore implements Store {
  failing = false;
  constructor(readonly inner: MemoryStore) {}
  get url() {
    return this.inner.url;
  }
  private check(): void {
    if (this.failing) throw new Error('store unreachable (test)');
  }
  async get(k: string) {
    this.check();
    return this.inner.get(k);
  }
  async put(k: string, v: string, o?: PutOptions) {
    this.check();
    return this.inner.put(k, v, o);
  }
  async delete(k: string) {
    this.check();
    return this.inner.delete(k);
  }
  async list(prefix: string): Promise<ListResult> {
    this.check();
    return this.inner.list(prefix);
  }
  watch(prefix: string, from: number, handlers: WatchHandlers): Watch {
    return this.inner.watch(prefix, from, handlers);
  }
  close() {
    return this.inner.close();
  }
}

const keep = suite('control: lease manager renew and keep');

keep('renews renewMargin before expiry (margin clamped to half a short TTL), so the key never expires', () =>
  withStore(async (store, clock) => {
    const m = manager(store, clock, { ttlSeconds: 100 });
    const lease = await m.acquire(vxlanAttrs('192.0.2.1'));
    const k = subnetKey(DEFAULT_PREFIX, lease.subnet);
    const renewed: Lease[] = [];
    const keeper = m.keep(lease, { onLost: () => assert.unreachable('lost'), onRenewed: (l) => renewed.push(l) });
    try {
      await settle();
      const written = (await store.get(k))!.modRevision;
      await clock.advance(49_000);
      assert.is(renewed.length, 0, 'not before expiry - 50 s');
      assert.is((await store.get(k))!.modRevision, written);
      await clock.advance(2_000);
      assert.is(renewed.length, 1, 'renewed at expiry - 50 s');
      assert.is((await store.get(k))?.ttlSeconds, 99, 'a fresh 100 s TTL, written 1 s ago');
      assert.is(keeper.lease.expiresAt, renewed[0].expiresAt);
      await clock.advance(480_000); // to 531 s: renewals at 50, 100, ..., 500 s
      assert.ok(await store.get(k), 'still there long after the first TTL');
      assert.is(renewed.length, 10, 'one renewal every 50 s');
    } finally {
      keeper.stop();
    }
    assert.is(clock.timerCount, 0, 'stop() leaves no timer');
  }),
);

keep('renew() writes a fresh TTL and keeps unknown BackendData fields', () =>
  withStore(async (store, clock) => {
    const k = key('10.17.4.0/24');
    await store.put(k, '{"PublicIP":"192.0.2.1","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"66:00:00:00:00:01","Flavor":"x"}}', {
      ttlSeconds: 5,
    });
    const m = manager(store, clock, { ttlSeconds: 300 });
    const [lease] = (await m.listLeases()).leases;
    const renewed = await m.renew(lease);
    assert.is(renewed.expiresAt, clock.now + 300_000);
    assert.is((await store.get(k))?.ttlSeconds, 300);
    assert.is(
      (await store.get(k))?.value,
      '{"PublicIP":"192.0.2.1","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"66:00:00:00:00:01","Flavor":"x"}}',
    );
  }),
);

keep('a deleted lease is re-created at once', () =>
  withStore(async (store, clock) => {
    const log = recordingLogger();
    const m = manager(store, clock, { ttlSeconds: 100, log });
    const lease = await m.acquire(vxlanAttrs('192.0.2.1'));
    const keeper = m.keep(lease, { onLost: () => assert.unreachable('lost') });
    try {
      await settle();
      const k = subnetKey(DEFAULT_PREFIX, lease.subnet);
      await store.delete(k);
      await settle();
      assert.equal(await valueAt(store, k), lease.attrs);
      assert.is((await store.get(k))?.ttlSeconds, 100);
      assert.ok(log.records.some((r) => r.level === 'warn' && /deleted from the store/.test(r.msg)));
    } finally {
      keeper.stop();
    }
  }),
);

keep('a subnet taken by another node calls onLost and stops', () =>
  withStore(async (store, clock) => {
    const m = manager(store, clock, { ttlSeconds: 100 });
    const lease = await m.acquire(vxlanAttrs('192.0.2.1'));
    const lost: Error[] = [];
    const keeper = m.keep(lease, { onLost: (_l, err) => lost.push(err) });
    try {
      await settle();
      const k = subnetKey(DEFAULT_PREFIX, lease.subnet);
      await store.delete(k);
      await store.put(k, formatLeaseAttrs(vxlanAttrs('192.0.2.2')), { ttlSeconds: 100 });
      await settle();
      assert.is(lost.length, 1);
      assert.match(lost[0].message, /^lease 10\.17\.\d+\.0\/24 was lost: .*leased to 192\.0\.2\.2 now$/);
      assert.equal(await valueAt(store, k), vxlanAttrs('192.0.2.2'), 'the other node keeps it');
      assert.is(clock.timerCount, 0, 'no renewal scheduled');
    } finally {
      keeper.stop();
    }
  }),
);

for (const [what, strayKey, strayValue] of [
  ['an unparseable value in a /25 inside it', (s: string) => s.replace(/\.0\/24$/, '.128-25'), 'garbage'],
  ['a refused /16 covering it', () => '10.17.0.0-16', formatLeaseAttrs(vxlanAttrs('192.0.2.7', '66:00:00:00:00:07'))],
  ['a duplicate of it under another key spelling', (s: string) => `dup/${s.replace('/', '-')}`, formatLeaseAttrs(vxlanAttrs('192.0.2.8', '66:00:00:00:00:08'))],
] as const) {
  keep(`our lease deleted while ${what} exists: re-created, not lost`, () =>
    withStore(async (store, clock) => {
      const m = manager(store, clock, { ttlSeconds: 100 });
      const lease = await m.acquire(vxlanAttrs('192.0.2.1'));
      const lost: Error[] = [];
      const keeper = m.keep(lease, { onLost: (_l, err) => lost.push(err) });
      try {
        await settle();
        const k = subnetKey(DEFAULT_PREFIX, lease.subnet);
        await store.put(`${DEFAULT_PREFIX}/subnets/${strayKey(formatCidr(lease.subnet))}`, strayValue);
        await store.delete(k);
        await settle();
        assert.is(lost.length, 0, lost[0]?.message);
        assert.equal(await valueAt(store, k), lease.attrs, 're-created');
      } finally {
        keeper.stop();
      }
    }),
  );
}

keep('after a failed renewal, retries every retrySeconds; a lease that expired meanwhile is re-created', () =>
  withStore(async (memory, clock) => {
    const store = new FlakyStore(memory);
    const log = recordingLogger();
    const m = manager(store, clock, { ttlSeconds: 100, retrySeconds: 30, log });
    const lease = await m.acquire(vxlanAttrs('192.0.2.1'));
    const k = subnetKey(DEFAULT_PREFIX, lease.subnet);
    const renewed: Lease[] = [];
    const keeper = m.keep(lease, { onLost: () => assert.unreachable('lost'), onRenewed: (l) => renewed.push(l) });
    try {
      await settle();
      store.failing = true;
      await clock.advance(51_000); // renewal due at 50 s fails
      const failures = () => log.records.filter((r) => /renewing the lease failed; retrying in 30s/.test(r.msg)).length;
      assert.is(failures(), 1);
      await clock.advance(30_000); // 81 s: fails again
      assert.is(failures(), 2);
      await clock.advance(30_000); // 111 s: the key expired at 100 s
      memory.expire();
      assert.is(await memory.get(k), undefined, 'expired during the outage');
      store.failing = false;
      await clock.advance(30_000); // 141 s: store back, lease re-created
      assert.is(renewed.length, 1);
      assert.equal(await valueAt(memory, k), lease.attrs);
      assert.is((await memory.get(k))?.ttlSeconds, 99, 'a fresh 100 s TTL, written at 140 s');
    } finally {
      keeper.stop();
    }
  }),
);

keep.run();

// ---- watch ----------------------------------------------------------------------------------------

/** Runs `afterList` once, after the first list returns and before the caller can watch: a window for compaction. */
class ListHookStore extends FlakyStore {
  afterList?: () => Promise<void>;
  watches = 0;
  override async list(prefix: string): Promise<ListResult> {
    const result = await super.list(prefix);
    const hook = this.afterList;
    this.afterList = undefined;
    if (hook) await hook();
    return result;
  }
  override watch(prefix: string, from: number, handlers: WatchHandlers): Watch {
    this.watches++;
    return super.watch(prefix, from, handlers);
  }
}

interface Seen {
  snapshots: string[][];
  events: string[];
  connection: boolean[];
}

function recorder(): { seen: Seen; handlers: Parameters<LeaseManager['watchLeases']>[0] } {
  const seen: Seen = { snapshots: [], events: [], connection: [] };
  const show = (l: Lease) => `${formatCidr(l.subnet)}@${l.attrs.backendData?.vtepMac?.toString(16) ?? '-'}`;
  return {
    seen,
    handlers: {
      onSnapshot: (leases) => seen.snapshots.push(leases.map(show)),
      onEvents: (events: LeaseEvent[]) => {
        for (const e of events) seen.events.push(`${e.type} ${show(e.lease)}`);
      },
      onConnectionChange: (connected) => seen.connection.push(connected),
    },
  };
}

const watch = suite('control: lease manager watch');

watch('snapshot, then added/removed events; malformed values are skipped with a warning', () =>
  withStore(async (store, clock) => {
    await store.put(key('10.17.1.0/24'), formatLeaseAttrs(vxlanAttrs('192.0.2.1', '66:00:00:00:00:01')));
    await store.put(key('10.17.2.0/24'), formatLeaseAttrs(vxlanAttrs('192.0.2.2', '66:00:00:00:00:02')));
    await store.put(key('10.17.3.0/24'), '{"PublicIP":"not an ip"}');
    await store.put('/coreos.com/network/subnets/junk', '{}');
    const log = recordingLogger();
    const m = manager(store, clock, { log });
    const { seen, handlers } = recorder();
    const w = await m.watchLeases(handlers);
    try {
      assert.equal(seen.snapshots, [['10.17.1.0/24@660000000001', '10.17.2.0/24@660000000002']]);
      assert.is(log.records.filter((r) => r.level === 'warn').length, 2, 'one warning per bad key');

      await store.put(key('10.17.4.0/24'), formatLeaseAttrs(vxlanAttrs('192.0.2.4', '66:00:00:00:00:04')));
      await store.put(key('10.17.1.0/24'), formatLeaseAttrs(vxlanAttrs('192.0.2.1', '66:00:00:00:00:11'))); // restarted node
      await store.delete(key('10.17.2.0/24'));
      await store.put(key('10.17.4.0/24'), 'garbage'); // turns unreadable: gone for us
      await store.put(key('10.17.5.0/24'), 'garbage'); // never readable: nothing to say
      await store.delete(key('10.17.3.0/24')); // never delivered: nothing to remove
      await store.put('/coreos.com/network/config', CONFIG_JSON); // outside subnets/
      await settle();
      assert.equal(seen.events, [
        'added 10.17.4.0/24@660000000004',
        'added 10.17.1.0/24@660000000011',
        'removed 10.17.2.0/24@660000000002',
        'removed 10.17.4.0/24@660000000004',
      ]);
      assert.equal(seen.snapshots.length, 1);
    } finally {
      w.close();
    }
    await store.put(key('10.17.6.0/24'), formatLeaseAttrs(vxlanAttrs('192.0.2.6')));
    await settle();
    assert.is(seen.events.length, 4, 'nothing after close');
  }),
);

watch('lost history (compaction between list and watch): re-lists and delivers a fresh snapshot, no duplicates', () =>
  withStore(async (memory, clock) => {
    const store = new ListHookStore(memory);
    await memory.put(key('10.17.1.0/24'), formatLeaseAttrs(vxlanAttrs('192.0.2.1', '66:00:00:00:00:01')));
    store.afterList = async () => {
      await memory.put(key('10.17.2.0/24'), formatLeaseAttrs(vxlanAttrs('192.0.2.2', '66:00:00:00:00:02')));
      memory.compact(memory.revision);
    };
    const log = recordingLogger();
    const { seen, handlers } = recorder();
    const w = await manager(store, clock, { log }).watchLeases(handlers);
    try {
      await settle();
      assert.equal(seen.snapshots, [['10.17.1.0/24@660000000001'], ['10.17.1.0/24@660000000001', '10.17.2.0/24@660000000002']]);
      assert.ok(log.records.some((r) => /lost history/.test(r.msg)));
      assert.is(store.watches, 2);
      await memory.delete(key('10.17.1.0/24'));
      await settle();
      assert.equal(seen.events, ['removed 10.17.1.0/24@660000000001'], 'events flow once, from the new watch');
    } finally {
      w.close();
    }
  }),
);

watch('a failed re-list is retried after retrySeconds and reported as a connection change', () =>
  withStore(async (memory, clock) => {
    const store = new ListHookStore(memory);
    store.afterList = async () => {
      memory.compact(memory.revision + 1);
      await memory.put(key('10.17.2.0/24'), formatLeaseAttrs(vxlanAttrs('192.0.2.2', '66:00:00:00:00:02')));
      memory.compact(memory.revision);
      store.failing = true; // the re-list after the resync fails
    };
    const { seen, handlers } = recorder();
    const w = await manager(store, clock, { retrySeconds: 20 }).watchLeases(handlers);
    try {
      await settle();
      assert.equal(seen.snapshots, [[]]);
      assert.equal(seen.connection, [false]);
      store.failing = false;
      await clock.advance(20_000);
      assert.equal(seen.snapshots, [[], ['10.17.2.0/24@660000000002']]);
    } finally {
      w.close();
    }
  }),
);

watch('connection changes pass through; a throwing handler is logged, not thrown into the store', () =>
  withStore(async (store, clock) => {
    const log = recordingLogger();
    const { seen, handlers } = recorder();
    const w = await manager(store, clock, { log }).watchLeases({
      ...handlers,
      onEvents: () => {
        throw new Error('handler bug');
      },
    });
    try {
      store.simulateConnectionChange(false, new Error('etcd down'));
      store.simulateConnectionChange(true);
      await store.put(key('10.17.1.0/24'), formatLeaseAttrs(vxlanAttrs('192.0.2.1')));
      await settle();
      assert.equal(seen.connection, [false, true]);
      assert.ok(log.records.some((r) => r.level === 'error' && /events handler threw/.test(r.msg) && r.fields?.error === 'handler bug'));
    } finally {
      w.close();
    }
  }),
);

watch.run();


// ---- what a key whose value does not parse means to acquire --------------------------------------------

const unreadable = suite('control: lease manager acquire, unreadable values');

unreadable('a key whose value does not parse takes its subnet: the previous subnet there is not reused, nor picked at random', () =>
  withStore(async (store, clock) => {
    await store.put(key('10.17.5.0/24'), 'garbage');
    await store.put(key('10.17.1.0/24'), '{"PublicIP":"not an ip"}');
    const lease = await manager(store, clock, { random: () => 0 }).acquire(vxlanAttrs('192.0.2.1'), {
      previousSubnet: parseCidr('10.17.5.0/24'),
    });
    assert.is(formatCidr(lease.subnet), '10.17.2.0/24', 'the first subnet without any key');
    assert.is((await store.get(key('10.17.5.0/24')))?.value, 'garbage', 'left alone');
    assert.is((await store.get(key('10.17.1.0/24')))?.value, '{"PublicIP":"not an ip"}', 'left alone');
  }),
);

unreadable.run();

// ---- node identity: the node name before the public IP ---------------------------------------------------

const identity = suite('control: lease manager node identity');

function named(name: string, publicIp: string, mac = '66:00:00:00:00:01'): LeaseAttrs {
  return { ...vxlanAttrs(publicIp, mac), nodeName: name };
}

identity('a restart keeps the subnet of subnet.env when its lease is ours, though another lease (foreign PublicIP) names us', () =>
  withStore(async (store, clock) => {
    const rogue = named('node-a', '192.0.2.66', '66:00:00:00:00:66');
    await store.put(key('10.17.1.0/24'), formatLeaseAttrs(rogue), { ttlSeconds: 600 });
    await store.put(key('10.17.9.0/24'), formatLeaseAttrs(named('node-a', '192.0.2.1')), { ttlSeconds: 600 });
    const log = recordingLogger();
    const lease = await manager(store, clock, { log }).acquire(named('node-a', '192.0.2.1'), { previousSubnet: parseCidr('10.17.9.0/24') });
    assert.is(formatCidr(lease.subnet), '10.17.9.0/24', 'where our pods live');
    assert.equal(await valueAt(store, key('10.17.1.0/24')), rogue, 'the other lease is left alone');
    const warning = log.records.find((r) => r.level === 'warn' && /more than one lease names our node/.test(r.msg));
    assert.is(warning?.fields?.others, key('10.17.1.0/24'));

    // An unnamed lease of our PublicIP at subnet.env's subnet (flanneld wrote it) is ours too, and comes first.
    await store.put(key('10.17.9.0/24'), formatLeaseAttrs(vxlanAttrs('192.0.2.1')), { ttlSeconds: 600 });
    const again = await manager(store, clock).acquire(named('node-a', '192.0.2.1'), { previousSubnet: parseCidr('10.17.9.0/24') });
    assert.is(formatCidr(again.subnet), '10.17.9.0/24');

    // Not ours there (another node's): the lease naming us elsewhere is ours, as before.
    await store.put(key('10.17.9.0/24'), formatLeaseAttrs(named('node-b', '192.0.2.2')), { ttlSeconds: 600 });
    const elsewhere = await manager(store, clock).acquire(named('node-a', '192.0.2.1'), { previousSubnet: parseCidr('10.17.9.0/24') });
    assert.is(formatCidr(elsewhere.subnet), '10.17.1.0/24');
    assert.equal(await valueAt(store, key('10.17.9.0/24')), named('node-b', '192.0.2.2'), "another node's lease is never taken");
  }),
);

identity('a node back with a new public IP finds its lease by name and rewrites it in place (same key, compare-and-swap)', () =>
  withStore(async (store, clock) => {
    await store.put(key('10.17.9.0/24'), formatLeaseAttrs(named('node-a', '192.0.2.1', '66:00:00:00:00:0a')), { ttlSeconds: 600 });
    await store.put(key('10.17.3.0/24'), formatLeaseAttrs(vxlanAttrs('192.0.2.7', '66:00:00:00:00:07')), { ttlSeconds: 600 });
    const log = recordingLogger();
    const lease = await manager(store, clock, { log }).acquire(named('node-a', '192.0.2.7', '66:00:00:00:00:0a'), {
      previousSubnet: parseCidr('10.17.5.0/24'),
    });
    assert.is(formatCidr(lease.subnet), '10.17.9.0/24', 'by name, before the unnamed lease of our new IP and before subnet.env');
    assert.equal(await valueAt(store, key('10.17.9.0/24')), named('node-a', '192.0.2.7', '66:00:00:00:00:0a'));
    assert.is((await store.get(key('10.17.9.0/24')))?.ttlSeconds, 86400);
    assert.equal(await valueAt(store, key('10.17.3.0/24')), vxlanAttrs('192.0.2.7', '66:00:00:00:00:07'), 'the other lease untouched');
    assert.is((await store.list('/coreos.com/network/subnets/')).kvs.length, 2, 'no second lease');
    assert.ok(log.records.some((r) => r.msg === 'our public IP changed: our lease now points at the new one' && r.fields?.was === '192.0.2.1'));
  }),
);

identity('a lease without a name (written by flanneld) is ours by PublicIP, and gets our name', () =>
  withStore(async (store, clock) => {
    await store.put(key('10.17.9.0/24'), formatLeaseAttrs(vxlanAttrs('192.0.2.1')), { ttlSeconds: 600 });
    const lease = await manager(store, clock).acquire(named('node-a', '192.0.2.1'));
    assert.is(formatCidr(lease.subnet), '10.17.9.0/24');
    assert.is((await valueAt(store, key('10.17.9.0/24')))?.nodeName, 'node-a');
  }),
);

identity("another node's lease is never taken: not by our PublicIP, not by our subnet.env", () =>
  withStore(async (store, clock) => {
    // Our old address went to node-b, and our expired subnet was given to node-c meanwhile.
    await store.put(key('10.17.9.0/24'), formatLeaseAttrs(named('node-b', '192.0.2.1', '66:00:00:00:00:0b')), { ttlSeconds: 600 });
    await store.put(key('10.17.5.0/24'), formatLeaseAttrs(named('node-c', '192.0.2.3', '66:00:00:00:00:0c')), { ttlSeconds: 600 });
    const lease = await manager(store, clock, { random: () => 0 }).acquire(named('node-a', '192.0.2.1', '66:00:00:00:00:0a'), {
      previousSubnet: parseCidr('10.17.5.0/24'),
    });
    assert.is(formatCidr(lease.subnet), '10.17.1.0/24', 'a new subnet');
    assert.equal(await valueAt(store, key('10.17.9.0/24')), named('node-b', '192.0.2.1', '66:00:00:00:00:0b'));
    assert.equal(await valueAt(store, key('10.17.5.0/24')), named('node-c', '192.0.2.3', '66:00:00:00:00:0c'));
  }),
);

identity('a node whose named lease expired comes back to its subnet.env subnet when still free', () =>
  withStore(async (store, clock) => {
    await store.put(key('10.17.5.0/24'), formatLeaseAttrs(named('node-a', '192.0.2.1')), { ttlSeconds: 60 });
    clock.now += 61_000;
    const lease = await manager(store, clock).acquire(named('node-a', '192.0.2.9'), { previousSubnet: parseCidr('10.17.5.0/24') });
    assert.is(formatCidr(lease.subnet), '10.17.5.0/24');
    assert.equal(await valueAt(store, key('10.17.5.0/24')), named('node-a', '192.0.2.9'));
  }),
);

identity('the in-place rewrite is a compare-and-swap: a write between our read and ours makes us look again', () =>
  withStore(async (memory, clock) => {
    await memory.put(key('10.17.9.0/24'), formatLeaseAttrs(named('node-a', '192.0.2.1')), { ttlSeconds: 600 });
    let interfered = false;
    const store = new (class extends FlakyStore {
      override async put(k: string, v: string, o?: PutOptions): Promise<boolean> {
        if (!interfered && o?.ifModRevision !== undefined) {
          interfered = true; // node-b took the subnet (the old lease expired and was given away) just before our write
          await memory.put(k, formatLeaseAttrs(named('node-b', '192.0.2.2', '66:00:00:00:00:0b')), { ttlSeconds: 600 });
        }
        return super.put(k, v, o);
      }
    })(memory);
    const lease = await manager(store, clock, { random: () => 0 }).acquire(named('node-a', '192.0.2.7'));
    assert.ok(interfered);
    assert.is(formatCidr(lease.subnet), '10.17.1.0/24');
    assert.is((await valueAt(memory, key('10.17.9.0/24')))?.nodeName, 'node-b', 'not overwritten');
  }),
);

identity('renew: a key naming another node, or our name at another address, is lost; an unnamed value of our IP is ours', () =>
  withStore(async (store, clock) => {
    const m = manager(store, clock, { ttlSeconds: 100 });
    const lease = await m.acquire(named('node-a', '192.0.2.1'));
    const k = subnetKey(DEFAULT_PREFIX, lease.subnet);
    await store.put(k, formatLeaseAttrs(vxlanAttrs('192.0.2.1')), { ttlSeconds: 100 });
    await m.renew(lease);
    assert.equal(await valueAt(store, k), named('node-a', '192.0.2.1'), 'written over');
    await store.put(k, formatLeaseAttrs(named('node-a', '192.0.2.8')), { ttlSeconds: 100 });
    await rejects(m.renew(lease), /^lease 10\.17\.\d+\.0\/24 was lost: it is leased to node node-a \(192\.0\.2\.8\) now$/);
    await store.put(k, formatLeaseAttrs(named('node-b', '192.0.2.1')), { ttlSeconds: 100 });
    await rejects(m.renew(lease), /^lease 10\.17\.\d+\.0\/24 was lost: it is leased to node node-b \(192\.0\.2\.1\) now$/);
  }),
);

identity('keep: a second process with our name at another address takes the lease; we stop (onLost)', () =>
  withStore(async (store, clock) => {
    const m = manager(store, clock, { ttlSeconds: 100 });
    const lease = await m.acquire(named('node-a', '192.0.2.1'));
    const lost: Error[] = [];
    const keeper = m.keep(lease, { onLost: (_l, err) => lost.push(err) });
    try {
      await settle();
      await manager(store, clock).acquire(named('node-a', '192.0.2.9'));
      await settle();
      assert.is(lost.length, 1);
      assert.match(lost[0].message, /leased to node node-a \(192\.0\.2\.9\) now/);
      assert.is((await valueAt(store, subnetKey(DEFAULT_PREFIX, lease.subnet)))?.publicIp, parseIPv4('192.0.2.9'));
    } finally {
      keeper.stop();
    }
  }),
);

identity.run();

// ---- the network config changing under a running agent ---------------------------------------------------

const configWatch = suite('control: network config watch');

configWatch('a changed, invalid or deleted config is a mismatch, logged once per change; the same config again clears it', () =>
  withStore(async (store, clock) => {
    await store.put('/coreos.com/network/config', CONFIG_JSON);
    const log = recordingLogger();
    const w = await manager(store, clock, { log }).watchNetworkConfig(CONFIG);
    const warnings = () => log.records.filter((r) => r.level === 'warn').map((r) => r.fields?.differences);
    try {
      assert.is(w.mismatch, undefined);
      // The same network written differently is no mismatch.
      await store.put('/coreos.com/network/config', '{"network":"10.17.0.0/16","Backend":{"Type":"vxlan"}}');
      await settle();
      assert.is(w.mismatch, undefined);
      const other = '{"Network":"10.18.0.0/16","SubnetLen":24,"Backend":{"Type":"vxlan","VNI":2,"Port":4789}}';
      await store.put('/coreos.com/network/config', other);
      await settle();
      assert.equal(w.mismatch, {
        stored: other,
        differences: [
          'Network 10.17.0.0/16 -> 10.18.0.0/16',
          'SubnetMin 10.17.1.0 -> 10.18.1.0',
          'SubnetMax 10.17.255.0 -> 10.18.255.0',
          'Backend.VNI 1 -> 2',
          'Backend.Port 8472 -> 4789',
        ],
      });
      await store.put('/coreos.com/network/config', other); // written again: nothing new to say
      await settle();
      assert.is(warnings().length, 1);
      await store.put('/coreos.com/network/config', '{"Network":"10.17.0.0/16","Backend":{"Type":"ipip"}}');
      await settle();
      assert.equal(w.mismatch?.differences, ['Backend.Type vxlan -> ipip']);
      await store.put('/coreos.com/network/config', '{"Network":');
      await settle();
      assert.match(w.mismatch!.differences[0], /^the stored config is invalid: network config: not valid JSON/);
      await store.delete('/coreos.com/network/config');
      await settle();
      assert.equal(w.mismatch, { stored: '(deleted)', differences: ['the network config was deleted from the store'] });
      assert.is(warnings().length, 4);
      await store.put('/coreos.com/network/config', CONFIG_JSON);
      await settle();
      assert.is(w.mismatch, undefined);
      assert.ok(log.records.some((r) => r.level === 'info' && /matches the running one again/.test(r.msg)));
    } finally {
      w.close();
    }
  }),
);

configWatch('a config already different when the agent starts watching is reported at once', () =>
  withStore(async (store, clock) => {
    await store.put('/coreos.com/network/config', '{"Network":"10.17.0.0/16","Backend":{"Type":"vxlan","DirectRouting":true}}');
    const w = await manager(store, clock).watchNetworkConfig(CONFIG);
    try {
      assert.equal(w.mismatch?.differences, ['Backend.DirectRouting false -> true']);
    } finally {
      w.close();
    }
  }),
);

configWatch.run();
