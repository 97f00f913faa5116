// The validator's IPv6 rules (lease-validator.ts file comment): each refuses with its reason, valid leases pass,
// single-stack leases keep serving the stack they have.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { DEFAULT_PREFIX, type LeaseAttrs, formatLeaseAttrs, subnetKey } from '../../src/control/lease';
import { type LeaseRecord, recordFromKeyValue } from '../../src/control/lease-store';
import { type LeaseChecks, LeaseValidator } from '../../src/control/lease-validator';
import { nullLogger } from '../../src/control/log';
import { parseNetworkConfig } from '../../src/control/network-config';
import { parseCidr, parseIPv4, parseMac } from '../../src/wire/address';
import { parseCidr6, parseIPv6 } from '../../src/wire/address6';

const DUAL = parseNetworkConfig('{"Network":"10.244.0.0/16","EnableIPv6":true,"IPv6Network":"fd00:10:244::/56","Backend":{"Type":"vxlan"}}');
const V6ONLY = parseNetworkConfig('{"EnableIPv4":false,"EnableIPv6":true,"IPv6Network":"fd00:10:244::/56","Backend":{"Type":"vxlan"}}');
const V4ONLY = parseNetworkConfig('{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan"}}');
const NONE = { address: 0, prefixLength: 0 };
const DUAL_CHECKS: LeaseChecks = {
  config: DUAL,
  ownSubnet: parseCidr('10.244.1.0/24'),
  ownSubnet6: parseCidr6('fd00:10:244:1::/64'),
  ownVtepMac: parseMac('66:00:00:00:00:01'),
  ownVtepMac6: parseMac('66:00:00:00:01:01'),
  ownPublicIp: parseIPv4('192.0.2.1'),
  ownPublicIpv6: parseIPv6('2001:db8::1'),
};

let revision = 100;
function record(v4: string | undefined, v6: string | undefined, attrs: LeaseAttrs | string): LeaseRecord {
  const k = subnetKey(DEFAULT_PREFIX, v4 ? parseCidr(v4) : NONE, v6 ? parseCidr6(v6) : undefined);
  const value = typeof attrs === 'string' ? attrs : formatLeaseAttrs(attrs);
  return recordFromKeyValue({ key: k, value, modRevision: ++revision, createRevision: revision, hasTtl: false }, 0, DEFAULT_PREFIX);
}

function node(n: number, over: Partial<LeaseAttrs> = {}): LeaseAttrs {
  return {
    publicIp: parseIPv4(`192.0.2.${n}`),
    publicIpv6: parseIPv6(`2001:db8::${n}`),
    backendType: 'vxlan',
    backendData: { vni: 1, vtepMac: 0x660000000000 + n },
    backendV6Data: { vni: 1, vtepMac: 0x660000000100 + n },
    ...over,
  };
}

function reasons(checks: LeaseChecks, records: LeaseRecord[]): Record<string, string> {
  const v = new LeaseValidator(nullLogger, checks);
  v.snapshot(records);
  return Object.fromEntries(v.refused.map((r) => [r.key.slice(r.key.lastIndexOf('/') + 1), r.reason]));
}

const test = suite('control: lease validator, IPv6');

test('each IPv6 rule refuses with its reason; a valid dual-stack lease and a single-stack IPv4 lease pass', () => {
  const refused = reasons(DUAL_CHECKS, [
    record('10.244.2.0/24', 'fd00:10:244:2::/64', node(2)),
    record('10.244.3.0/24', undefined, { publicIp: parseIPv4('192.0.2.3'), backendType: 'vxlan', backendData: { vni: 1, vtepMac: 0x660000000003 } }),
    record('10.244.4.0/24', 'fd00:10:244:4::/64', node(4, { publicIpv6: 1n })),
    record('10.244.5.0/24', 'fd00:10:244:5::/64', node(5, { publicIpv6: parseIPv6('fe80::5') })),
    record('10.244.6.0/24', 'fd00:10:244:6::/64', node(6, { publicIpv6: parseIPv6('ff02::6') })),
    record('10.244.7.0/24', 'fd00:10:244:7::/64', node(7, { publicIpv6: parseIPv6('::ffff:192.0.2.7') })),
    record('10.244.8.0/24', 'fd00:10:244:8::/64', node(8, { publicIpv6: parseIPv6('2001:db8::1') })),
    record('10.244.9.0/24', 'fd00:10:244:9::/64', node(9, { publicIpv6: 0n })),
    record('10.244.10.0/24', 'fd00:10:244:a::/64', node(10, { backendV6Data: { vni: 1 } })),
    record('10.244.11.0/24', 'fd00:10:244:b::/64', node(11, { backendV6Data: { vni: 2, vtepMac: 0x66000000010b } })),
    record('10.244.12.0/24', 'fd00:10:245::/64', node(12)),
    record('10.244.13.0/24', 'fd00:10:244:1::/64', node(13)),
    record('10.244.14.0/24', 'fd00:10:244:2::/64', node(14)),
    record('10.244.15.0/24', 'fd00:10:244:f::/80', node(15)),
    record('10.244.16.0/24', 'fd00:10:244:10::/64', node(16, { backendV6Data: { vni: 1, vtepMac: parseMac('66:00:00:00:01:01') } })),
    record('10.244.17.0/24', 'fd00:10:244:11::/64', node(17, { backendV6Data: { vni: 1, vtepMac: 0x660000000102 } })),
    record('10.244.18.0/24', 'fd00:10:244:12::/64', node(18, { backendV6Data: { vni: 1, vtepMac: 0x660000000012 } })),
  ]);
  assert.equal(refused, {
    '10.244.4.0-24&fd00:10:244:4::-64': "PublicIPv6 ::1 is the loopback address, not a node's underlay address",
    '10.244.5.0-24&fd00:10:244:5::-64': "PublicIPv6 fe80::5 is in the link-local range (fe80::/10), not a node's underlay address",
    '10.244.6.0-24&fd00:10:244:6::-64': "PublicIPv6 ff02::6 is in the multicast range (ff00::/8), not a node's underlay address",
    '10.244.7.0-24&fd00:10:244:7::-64': "PublicIPv6 ::ffff:c000:207 is in the IPv4-mapped range (::ffff:0:0/96), not a node's underlay address",
    '10.244.8.0-24&fd00:10:244:8::-64': "PublicIPv6 2001:db8::1 names this node's own address",
    '10.244.9.0-24&fd00:10:244:9::-64': "PublicIPv6 :: is the unspecified address, not a node's underlay address",
    '10.244.10.0-24&fd00:10:244:a::-64': 'an IPv6 subnet (fd00:10:244:a::/64) without a BackendV6Data VtepMAC',
    '10.244.11.0-24&fd00:10:244:b::-64': 'BackendV6Data VNI 2 is not ours (1)',
    '10.244.12.0-24&fd00:10:245::-64': 'fd00:10:245::/64 is outside the IPv6 network fd00:10:244::/56',
    '10.244.13.0-24&fd00:10:244:1::-64': 'overlaps our IPv6 subnet fd00:10:244:1::/64',
    '10.244.14.0-24&fd00:10:244:2::-64': 'overlaps fd00:10:244:2::/64 of 192.0.2.2 / 2001:db8::2',
    '10.244.15.0-24&fd00:10:244:f::-80': "an IPv6 /80, but the network's IPv6SubnetLen is 64",
    '10.244.16.0-24&fd00:10:244:10::-64': 'IPv6 VTEP MAC 66:00:00:00:01:01 is ours',
    '10.244.17.0-24&fd00:10:244:11::-64': 'IPv6 VTEP MAC 66:00:00:00:01:02 is already used by 10.244.2.0/24 and fd00:10:244:2::/64 of 192.0.2.2 / 2001:db8::2',
    '10.244.18.0-24&fd00:10:244:12::-64': 'IPv6 VTEP MAC 66:00:00:00:00:12 is also its IPv4 VTEP MAC',
  });
});

test('IPv6-only: the IPv4 half is not looked at, a lease without an IPv6 subnet is refused, our lease is told apart by its IPv6 subnet', () => {
  const checks: LeaseChecks = { config: V6ONLY, ownSubnet: NONE, ownSubnet6: parseCidr6('fd00:10:244:1::/64'), ownPublicIpv6: parseIPv6('2001:db8::1') };
  const only = (n: number, over: Partial<LeaseAttrs> = {}): LeaseAttrs => ({ publicIp: 0, publicIpv6: parseIPv6(`2001:db8::${n}`), backendType: 'vxlan', backendV6Data: { vni: 1, vtepMac: 0x660000000100 + n }, ...over });
  const v = new LeaseValidator(nullLogger, checks);
  const accepted = v.snapshot([
    record(undefined, 'fd00:10:244:1::/64', only(1)),
    record(undefined, 'fd00:10:244:2::/64', only(2)),
    record('10.244.3.0/24', undefined, node(3)),
    record(undefined, 'fd00:10:244:4::/64', only(4, { publicIpv6: undefined })),
    record(undefined, 'fd00:10:244:5::/64', only(5, { backendV6Data: { vni: 1, vtepMac: 0x660000000102 } })),
  ]);
  assert.equal(accepted.map((l) => l.subnet6 && l.subnet6.address), [parseIPv6('fd00:10:244:1::'), parseIPv6('fd00:10:244:2::')]);
  assert.equal(
    v.refused.map((r) => r.reason),
    [
      'an IPv6 subnet (fd00:10:244:4::/64) without a PublicIPv6',
      'IPv6 VTEP MAC 66:00:00:00:01:02 is already used by fd00:10:244:2::/64 of 2001:db8::2',
      'no IPv6 subnet, in an IPv6-only network',
    ],
  );
});

test('an IPv4-only network uses the IPv4 half of a dual-stack lease and ignores its IPv6 half', () => {
  const refused = reasons({ config: V4ONLY, ownSubnet: parseCidr('10.244.1.0/24') }, [
    record('10.244.2.0/24', 'fd00:10:244:2::/64', node(2, { publicIpv6: 1n })),
    record('10.244.3.0/24', 'fd00:10:244:2::/64', node(3)),
  ]);
  assert.equal(refused, {});
});

test('the loser of an IPv6 conflict is accepted once the winner leaves', () => {
  const v = new LeaseValidator(nullLogger, DUAL_CHECKS);
  const a = record('10.244.2.0/24', 'fd00:10:244:2::/64', node(2));
  const b = record('10.244.3.0/24', 'fd00:10:244:2::/64', node(3));
  v.snapshot([a, b]);
  assert.equal(v.refused.map((r) => r.key), [b.key]);
  const events = v.delete(a.key);
  assert.equal(events.map((e) => `${e.type} ${e.lease.attrs.publicIp}`), [`removed ${parseIPv4('192.0.2.2')}`, `added ${parseIPv4('192.0.2.3')}`]);
});

test.run();
