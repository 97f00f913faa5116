// Dual-stack and IPv6-only leases in flannel's layout (pkg/subnet/subnet.go MakeSubnetKey / ParseSubnetKey /
// LeaseAttrs; pkg/backend/vxlan/vxlan.go newSubnetAttrs) and their acquisition (pkg/subnet/etcd/local_manager.go).
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import {
  DEFAULT_PREFIX,
  type LeaseAttrs,
  formatLeaseAttrs,
  formatLeaseSubnets,
  parseLeaseAttrs,
  parseSubnetKey,
  parseSubnetKeys,
  subnetKey,
} from '../../src/control/lease';
import { LeaseManager, NetworkFullError } from '../../src/control/lease-manager';
import { recordFromKeyValue } from '../../src/control/lease-store';
import { parseNetworkConfig } from '../../src/control/network-config';
import { MemoryStore } from '../../src/store/memory';
import { formatCidr, parseCidr, parseIPv4, parseMac } from '../../src/wire/address';
import { formatCidr6, formatIPv6, parseCidr6, parseIPv6 } from '../../src/wire/address6';

// What a dual-stack flanneld writes: Go's json.Marshal of subnet.LeaseAttrs (field order PublicIP, PublicIPv6,
// BackendType, BackendData, BackendV6Data) with vxlan's vxlanLeaseAttrs {VNI, VtepMAC} in both backend fields
// (flannel pkg/subnet/subnet.go, pkg/backend/vxlan/vxlan.go newSubnetAttrs); the key is MakeSubnetKey's.
const FLANNEL_DUAL_KEY = '/coreos.com/network/subnets/10.244.1.0-24&fd00:10:244:1::-64';
const FLANNEL_DUAL_VALUE =
  '{"PublicIP":"192.0.2.11","PublicIPv6":"2001:db8::11","BackendType":"vxlan",' +
  '"BackendData":{"VNI":1,"VtepMAC":"9e:5a:3c:1d:22:01"},"BackendV6Data":{"VNI":1,"VtepMAC":"9e:5a:3c:1d:22:02"}}';
// An IPv6-only flanneld: newSubnetAttrs sets neither PublicIP nor BackendData (Go's zero IP4 marshals as "0.0.0.0"),
// and MakeSubnetKey of the empty IP4Net gives "0.0.0.0-0".
const FLANNEL_V6ONLY_KEY = '/coreos.com/network/subnets/0.0.0.0-0&fd00:10:244:7::-64';
const FLANNEL_V6ONLY_VALUE = '{"PublicIP":"0.0.0.0","PublicIPv6":"2001:db8::17","BackendType":"vxlan","BackendV6Data":{"VNI":1,"VtepMAC":"9e:5a:3c:1d:22:07"}}';
// A single-stack lease as flannel's registry test expects it byte for byte (pkg/subnet/etcd/registry_test.go): null PublicIPv6.
const FLANNEL_V4_VALUE = '{"PublicIP":"1.2.3.4","PublicIPv6":null}';

const layout = suite('control: lease layout, IPv6');

layout("parses a dual-stack flanneld's key and value", () => {
  const keys = parseSubnetKeys(FLANNEL_DUAL_KEY)!;
  assert.is(formatCidr(keys.subnet), '10.244.1.0/24');
  assert.is(formatCidr6(keys.subnet6!), 'fd00:10:244:1::/64');
  const attrs = parseLeaseAttrs(FLANNEL_DUAL_VALUE);
  assert.is(attrs.publicIp, parseIPv4('192.0.2.11'));
  assert.is(attrs.publicIpv6, parseIPv6('2001:db8::11'));
  assert.equal(attrs.backendData, { vni: 1, vtepMac: parseMac('9e:5a:3c:1d:22:01') });
  assert.equal(attrs.backendV6Data, { vni: 1, vtepMac: parseMac('9e:5a:3c:1d:22:02') });
  assert.is(formatLeaseAttrs(attrs), FLANNEL_DUAL_VALUE, 'written back byte for byte in flannel field order');
  const record = recordFromKeyValue({ key: FLANNEL_DUAL_KEY, value: FLANNEL_DUAL_VALUE, createRevision: 1, modRevision: 1, hasTtl: true }, 0, DEFAULT_PREFIX);
  assert.is(record.error, undefined);
  assert.is(formatCidr6(record.lease!.subnet6!), 'fd00:10:244:1::/64');
});

layout("parses an IPv6-only flanneld's key and value, and a single-stack value with PublicIPv6 null", () => {
  const keys = parseSubnetKeys(FLANNEL_V6ONLY_KEY)!;
  assert.is(formatCidr(keys.subnet), '0.0.0.0/0');
  assert.is(formatLeaseSubnets(keys.subnet, keys.subnet6), 'fd00:10:244:7::/64');
  const attrs = parseLeaseAttrs(FLANNEL_V6ONLY_VALUE);
  assert.is(attrs.publicIp, 0);
  assert.is(formatIPv6(attrs.publicIpv6!), '2001:db8::17');
  assert.is(attrs.backendData, undefined);
  assert.is(formatLeaseAttrs(attrs), FLANNEL_V6ONLY_VALUE);
  const v4 = parseLeaseAttrs(FLANNEL_V4_VALUE);
  assert.is(v4.publicIpv6, undefined);
  assert.is(v4.backendV6Data, undefined);
});

layout('subnetKey writes the forms flannel writes, RFC 5952 text as Go prints it', () => {
  assert.is(subnetKey(DEFAULT_PREFIX, parseCidr('10.244.1.0/24'), parseCidr6('fd00:10:244:1::/64')), FLANNEL_DUAL_KEY);
  assert.is(subnetKey(DEFAULT_PREFIX, { address: 0, prefixLength: 0 }, parseCidr6('fd00:10:244:7::/64')), FLANNEL_V6ONLY_KEY);
  assert.is(subnetKey(DEFAULT_PREFIX, parseCidr('10.244.1.0/24')), '/coreos.com/network/subnets/10.244.1.0-24');
});

layout('refuses keys that name no valid IPv6 subnet, or not in canonical spelling', () => {
  assert.is(parseSubnetKeys('/p/subnets/10.244.1.0-24&fd00:10:244:1::1-64'), undefined, 'host bits set');
  assert.is(parseSubnetKeys('/p/subnets/10.244.1.0-24&fd00:10:244:1::-129'), undefined, 'prefix too long');
  assert.is(parseSubnetKeys('/p/subnets/10.244.1.0-24&fd00:::1-64'), undefined, 'not an address');
  assert.is(formatCidr(parseSubnetKey('/p/subnets/10.244.1.0-24&fd00:10:244:1::-64')!), '10.244.1.0/24');
  const kv = (key: string) => ({ key, value: FLANNEL_DUAL_VALUE, createRevision: 1, modRevision: 1, hasTtl: true });
  assert.match(recordFromKeyValue(kv('/coreos.com/network/subnets/10.244.1.0-24&FD00:10:244:1:0::-64'), 0, DEFAULT_PREFIX).error!, /not the canonical key of 10\.244\.1\.0\/24 and fd00:10:244:1::\/64/);
  assert.match(recordFromKeyValue(kv('/coreos.com/network/subnets/0.0.0.0-0'), 0, DEFAULT_PREFIX).error!, /names no subnet/);
  assert.throws(() => parseLeaseAttrs('{"PublicIP":"192.0.2.1","PublicIPv6":"192.0.2.1"}'), /PublicIPv6 "192\.0\.2\.1" is not an IPv6 address/);
  assert.throws(() => parseLeaseAttrs('{"PublicIP":"192.0.2.1","PublicIPv6":6}'), /PublicIPv6 must be an IPv6 address string or null, got 6/);
  assert.throws(() => parseLeaseAttrs('{"PublicIP":"192.0.2.1","BackendV6Data":{"VtepMAC":"zz"}}'), /BackendV6Data\.VtepMAC "zz" is not a MAC address/);
  assert.throws(() => parseLeaseAttrs('{"PublicIP":"192.0.2.1","BackendV6Data":[]}'), /BackendV6Data must be an object/);
});

layout.run();

// ---- acquisition -------------------------------------------------------------------------------------

const DUAL = parseNetworkConfig('{"Network":"10.244.0.0/16","EnableIPv6":true,"IPv6Network":"fd00:10:244::/56","Backend":{"Type":"vxlan"}}');
const V6ONLY = parseNetworkConfig('{"EnableIPv4":false,"EnableIPv6":true,"IPv6Network":"fd00:10:244::/56","Backend":{"Type":"vxlan"}}');

function attrs(n: number, name?: string): LeaseAttrs {
  const a: LeaseAttrs = {
    publicIp: parseIPv4(`192.0.2.${n}`),
    publicIpv6: parseIPv6(`2001:db8::${n}`),
    backendType: 'vxlan',
    backendData: { vni: 1, vtepMac: 0x660000000000 + n },
    backendV6Data: { vni: 1, vtepMac: 0x660000010000 + n },
  };
  if (name !== undefined) a.nodeName = name;
  return a;
}

function v6only(n: number): LeaseAttrs {
  return { publicIp: 0, publicIpv6: parseIPv6(`2001:db8::${n}`), backendType: 'vxlan', backendV6Data: { vni: 1, vtepMac: 0x660000010000 + n } };
}

async function withManager(config: typeof DUAL, fn: (m: LeaseManager, store: MemoryStore) => Promise<void>, random: () => number = Math.random): Promise<void> {
  const store = new MemoryStore({ sweepIntervalMs: 0 });
  try {
    await fn(new LeaseManager({ store, config, random }), store);
  } finally {
    await store.close();
  }
}

async function rejects(promise: Promise<unknown>, expected: RegExp, type?: new (...args: never[]) => Error): Promise<void> {
  try {
    await promise;
  } catch (err) {
    if (type) assert.instance(err, type);
    assert.match((err as Error).message, expected);
    return;
  }
  assert.unreachable(`resolved; expected ${expected}`);
}

const acquire = suite('control: lease acquire, IPv6');

acquire('a dual-stack network gives one lease with both subnets, in one flannel key', () =>
  withManager(DUAL, async (m, store) => {
    const lease = await m.acquire(attrs(1, 'a'));
    assert.ok(lease.subnet6, 'an IPv6 subnet');
    assert.is(lease.subnet.prefixLength, 24);
    assert.is(lease.subnet6!.prefixLength, 64);
    assert.ok(DUAL.ipv6!.subnetMin <= lease.subnet6!.address && lease.subnet6!.address <= DUAL.ipv6!.subnetMax);
    const key = subnetKey(DEFAULT_PREFIX, lease.subnet, lease.subnet6);
    assert.match(key, /^\/coreos\.com\/network\/subnets\/10\.244\.\d+\.0-24&fd00:10:244:[0-9a-f]+::-64$/);
    assert.equal(parseLeaseAttrs((await store.get(key))!.value), attrs(1, 'a'));
  }));

acquire('reuse on restart keeps both subnets; the previous subnets of subnet.env are asked for first', () =>
  withManager(DUAL, async (m) => {
    const first = await m.acquire(attrs(1, 'a'));
    const again = await m.acquire(attrs(1, 'a'));
    assert.equal([again.subnet, again.subnet6], [first.subnet, first.subnet6]);
    const b = await m.acquire(attrs(2, 'b'), { previousSubnet: parseCidr('10.244.9.0/24'), previousSubnet6: parseCidr6('fd00:10:244:9::/64') });
    assert.is(formatLeaseSubnets(b.subnet, b.subnet6), '10.244.9.0/24 and fd00:10:244:9::/64');
  }));

acquire("a dual-stack flanneld's lease takes its IPv6 subnet: a previous subnet there is not given again", () =>
  withManager(DUAL, async (m, store) => {
    await store.put(FLANNEL_DUAL_KEY, FLANNEL_DUAL_VALUE, { ttlSeconds: 60 });
    const lease = await m.acquire(attrs(3, 'c'), { previousSubnet: parseCidr('10.244.2.0/24'), previousSubnet6: parseCidr6('fd00:10:244:1::/64') });
    assert.is(formatCidr(lease.subnet), '10.244.2.0/24');
    assert.is.not(formatCidr6(lease.subnet6!), 'fd00:10:244:1::/64');
  }));

acquire('a lease from before the network became dual-stack keeps its IPv4 subnet and gains an IPv6 one', () =>
  withManager(DUAL, async (m, store) => {
    const old: LeaseAttrs = { publicIp: parseIPv4('192.0.2.1'), backendType: 'vxlan', backendData: { vni: 1, vtepMac: 0x660000000001 }, nodeName: 'a' };
    await store.put(subnetKey(DEFAULT_PREFIX, parseCidr('10.244.5.0/24')), formatLeaseAttrs(old), { ttlSeconds: 60 });
    const lease = await m.acquire(attrs(1, 'a'));
    assert.is(formatCidr(lease.subnet), '10.244.5.0/24');
    assert.ok(lease.subnet6);
    assert.is(await store.get(subnetKey(DEFAULT_PREFIX, parseCidr('10.244.5.0/24'))), undefined, 'the single-stack key is gone');
    assert.ok(await store.get(subnetKey(DEFAULT_PREFIX, lease.subnet, lease.subnet6)));
  }));

acquire('an IPv6-only network writes flannel\'s 0.0.0.0-0& key and finds its lease again by PublicIPv6', () =>
  withManager(V6ONLY, async (m, store) => {
    await store.put(FLANNEL_V6ONLY_KEY, FLANNEL_V6ONLY_VALUE, { ttlSeconds: 60 });
    const lease = await m.acquire(v6only(1));
    assert.is(lease.subnet.prefixLength, 0);
    assert.is.not(formatCidr6(lease.subnet6!), 'fd00:10:244:7::/64', "not the flanneld node's subnet (PublicIP 0.0.0.0 on both)");
    assert.match(subnetKey(DEFAULT_PREFIX, lease.subnet, lease.subnet6), /\/subnets\/0\.0\.0\.0-0&fd00:10:244:[0-9a-f]+::-64$/);
    const again = await m.acquire(v6only(1));
    assert.equal(again.subnet6, lease.subnet6);
    const theirs = await m.acquire(parseLeaseAttrs(FLANNEL_V6ONLY_VALUE));
    assert.is(formatCidr6(theirs.subnet6!), 'fd00:10:244:7::/64', 'the flanneld node finds its own lease by PublicIPv6');
    assert.is((await store.list('/coreos.com/network/subnets/')).kvs.length, 2);
  }));

acquire('a full IPv6 network is a clear NetworkFullError', () =>
  withManager(
    parseNetworkConfig('{"Network":"10.244.0.0/16","EnableIPv6":true,"IPv6Network":"fd00::/62","Backend":{"Type":"vxlan"}}'),
    async (m) => {
      for (let n = 1; n <= 3; n++) await m.acquire(attrs(n, `n${n}`));
      await rejects(m.acquire(attrs(4, 'n4')), /IPv6 network fd00::\/62 has no free \/64 between fd00:0:0:1:: and fd00:0:0:3:: \(3 leases\); widen IPv6Network/, NetworkFullError);
    },
  ));

acquire('a huge IPv6 range (a /32 of /64s) is sampled uniformly, not counted out', () =>
  withManager(
    parseNetworkConfig('{"Network":"10.244.0.0/16","EnableIPv6":true,"IPv6Network":"fd00::/32","Backend":{"Type":"vxlan"}}'),
    async (m) => {
      const seen = new Set<string>();
      for (let n = 1; n <= 20; n++) {
        const lease = await m.acquire(attrs(n, `n${n}`));
        seen.add(formatCidr6(lease.subnet6!));
      }
      assert.is(seen.size, 20);
      // A random /64 of 2^32: all twenty in the first 2^16 would mean the draw is not spread over the range.
      const low = [...seen].filter((s) => parseCidr6(s).address < parseIPv6('fd00:0:1::')).length;
      assert.ok(low < 20, `${low} of 20 in the first 65,536 subnets`);
    },
  ));

acquire.run();
