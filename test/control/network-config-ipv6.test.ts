// Dual-stack and IPv6-only network configs, checked as flannel's CheckNetworkConfig checks them (pkg/subnet/config.go)
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { NetworkConfigError, carriesIPv4, formatNetworkConfig, networkConfigDifferences, parseNetworkConfig } from '../../src/control/network-config';
import { formatCidr } from '../../src/wire/address';
import { formatCidr6, formatIPv6, parseCidr6, parseIPv6 } from '../../src/wire/address6';

const test = suite('control: network config, IPv6');

function describe6(json: string) {
  const c = parseNetworkConfig(json);
  const v6 = c.ipv6;
  return {
    ipv4: carriesIPv4(c) ? formatCidr(c.network) : 'off',
    ipv6: v6 && { network: formatCidr6(v6.network), subnetLen: v6.subnetLen, min: formatIPv6(v6.subnetMin), max: formatIPv6(v6.subnetMax) },
  };
}

const accepted: Array<[string, string, ReturnType<typeof describe6>]> = [
  [
    "flannel's documented dual-stack example: a /56 of /64s, the first skipped, the last kept",
    '{"EnableIPv6":true,"Network":"10.244.0.0/16","IPv6Network":"fd00:10:244::/56","Backend":{"Type":"vxlan"}}',
    { ipv4: '10.244.0.0/16', ipv6: { network: 'fd00:10:244::/56', subnetLen: 64, min: 'fd00:10:244:1::', max: 'fd00:10:244:ff::' } },
  ],
  [
    'IPv6SubnetLen defaults to 64 for a /62',
    '{"EnableIPv6":true,"Network":"10.244.0.0/16","IPv6Network":"fd00::/62","Backend":{"Type":"host-gw"}}',
    { ipv4: '10.244.0.0/16', ipv6: { network: 'fd00::/62', subnetLen: 64, min: 'fd00:0:0:1::', max: 'fd00:0:0:3::' } },
  ],
  [
    'IPv6SubnetLen defaults to prefix+2 for a network smaller than /62; host bits of IPv6Network are cleared',
    '{"EnableIPv6":true,"Network":"10.244.0.0/16","IPv6Network":"fd00::5/120","Backend":{"Type":"vxlan"}}',
    { ipv4: '10.244.0.0/16', ipv6: { network: 'fd00::/120', subnetLen: 122, min: 'fd00::40', max: 'fd00::c0' } },
  ],
  [
    'explicit IPv6SubnetLen and bounds',
    '{"EnableIPv6":true,"Network":"10.244.0.0/16","IPv6Network":"fd00:10:244::/48","IPv6SubnetLen":80,' +
      '"IPv6SubnetMin":"fd00:10:244:0:1::","IPv6SubnetMax":"fd00:10:244:0:9::","Backend":{"Type":"vxlan"}}',
    { ipv4: '10.244.0.0/16', ipv6: { network: 'fd00:10:244::/48', subnetLen: 80, min: 'fd00:10:244:0:1::', max: 'fd00:10:244:0:9::' } },
  ],
  [
    'IPv6-only: EnableIPv4 false needs no Network (and ignores one given, as flannel does)',
    '{"EnableIPv4":false,"EnableIPv6":true,"IPv6Network":"fd00:10:244::/56","Backend":{"Type":"vxlan"}}',
    { ipv4: 'off', ipv6: { network: 'fd00:10:244::/56', subnetLen: 64, min: 'fd00:10:244:1::', max: 'fd00:10:244:ff::' } },
  ],
  [
    'IPv6 fields without EnableIPv6 are ignored, as flannel ignores them',
    '{"Network":"10.244.0.0/16","IPv6Network":"fd00:10:244::/56","Backend":{"Type":"ipip"}}',
    { ipv4: '10.244.0.0/16', ipv6: undefined },
  ],
];

for (const [name, json, expected] of accepted) {
  test(`accepts: ${name}`, () => assert.equal(describe6(json), expected));
}

const V4 = '"Network":"10.244.0.0/16",';
const rejected: Array<[string, string, RegExp]> = [
  ['both stacks off', '{"EnableIPv4":false,"Backend":{"Type":"vxlan"}}', /EnableIPv4 and EnableIPv6 are both false: the network carries nothing/],
  ['IPv6-only without IPv6Network', '{"EnableIPv4":false,"EnableIPv6":true,"Backend":{"Type":"vxlan"}}', /EnableIPv6 is true but IPv6Network is missing/],
  ['IPv6Network an IPv4 CIDR', `{${V4}"EnableIPv6":true,"IPv6Network":"10.0.0.0/8","Backend":{"Type":"vxlan"}}`, /IPv6Network "10\.0\.0\.0\/8" is not an IPv6 CIDR/],
  ['IPv6Network not a string', `{${V4}"EnableIPv6":true,"IPv6Network":6,"Backend":{"Type":"vxlan"}}`, /IPv6Network must be a CIDR string, got 6/],
  ['IPv6Network ::/0', `{${V4}"EnableIPv6":true,"IPv6Network":"::/0","Backend":{"Type":"vxlan"}}`, /is the whole IPv6 space/],
  ['IPv6Network link-local', `{${V4}"EnableIPv6":true,"IPv6Network":"fe80::/64","Backend":{"Type":"vxlan"}}`, /IPv6Network fe80::\/64 is in the link-local range \(fe80::\/10\)/],
  ['IPv6Network multicast', `{${V4}"EnableIPv6":true,"IPv6Network":"ff02::/16","Backend":{"Type":"vxlan"}}`, /is in the multicast range/],
  ['IPv6Network IPv4-mapped', `{${V4}"EnableIPv6":true,"IPv6Network":"::ffff:10.0.0.0/104","Backend":{"Type":"vxlan"}}`, /is in the IPv4-mapped range/],
  ['IPv6Network taking in loopback', `{${V4}"EnableIPv6":true,"IPv6Network":"::/64","Backend":{"Type":"vxlan"}}`, /::\/64 takes in the unspecified address/],
  ['IPv6Network too small', `{${V4}"EnableIPv6":true,"IPv6Network":"fd00::/125","Backend":{"Type":"vxlan"}}`, /IPv6Network fd00::\/125 is too small: the smallest useful IPv6 network is a \/124/],
  ['IPv6SubnetLen over 126', `{${V4}"EnableIPv6":true,"IPv6Network":"fd00::/56","IPv6SubnetLen":127,"Backend":{"Type":"vxlan"}}`, /IPv6SubnetLen 127 is too long/],
  ['IPv6SubnetLen leaves fewer than four subnets', `{${V4}"EnableIPv6":true,"IPv6Network":"fd00::/56","IPv6SubnetLen":57,"Backend":{"Type":"vxlan"}}`, /IPv6SubnetLen 57 is too short for IPv6Network fd00::\/56.*at least 58/],
  ['IPv6SubnetLen not an integer', `{${V4}"EnableIPv6":true,"IPv6Network":"fd00::/56","IPv6SubnetLen":"64","Backend":{"Type":"vxlan"}}`, /IPv6SubnetLen must be an integer from 0 to 128, got "64"/],
  ['IPv6SubnetMin outside', `{${V4}"EnableIPv6":true,"IPv6Network":"fd00::/56","IPv6SubnetMin":"fd01::","Backend":{"Type":"vxlan"}}`, /IPv6SubnetMin fd01:: is not in IPv6Network fd00::\/56/],
  ['IPv6SubnetMax outside', `{${V4}"EnableIPv6":true,"IPv6Network":"fd00::/56","IPv6SubnetMax":"fd00:0:0:100::","Backend":{"Type":"vxlan"}}`, /IPv6SubnetMax fd00:0:0:100:: is not in IPv6Network/],
  ['IPv6SubnetMin off boundary', `{${V4}"EnableIPv6":true,"IPv6Network":"fd00::/56","IPv6SubnetMin":"fd00:0:0:1::1","Backend":{"Type":"vxlan"}}`, /IPv6SubnetMin fd00:0:0:1::1 is not on an IPv6SubnetLen boundary \(\/64\)/],
  ['IPv6SubnetMin not an address', `{${V4}"EnableIPv6":true,"IPv6Network":"fd00::/56","IPv6SubnetMin":"x","Backend":{"Type":"vxlan"}}`, /IPv6SubnetMin "x" is not an IPv6 address/],
  ['IPv6SubnetMin above IPv6SubnetMax', `{${V4}"EnableIPv6":true,"IPv6Network":"fd00::/56","IPv6SubnetMin":"fd00:0:0:9::","IPv6SubnetMax":"fd00:0:0:8::","Backend":{"Type":"vxlan"}}`, /IPv6SubnetMin fd00:0:0:9:: is above IPv6SubnetMax fd00:0:0:8::/],
  ['EnableIPv6 with ipip', `{${V4}"EnableIPv6":true,"IPv6Network":"fd00::/56","Backend":{"Type":"ipip"}}`, /EnableIPv6 is not supported with backend ipip: IPv6 is carried by the vxlan and host-gw backends/],
  ['EnableIPv6 with bgp', `{${V4}"EnableIPv6":true,"IPv6Network":"fd00::/56","Backend":{"Type":"bgp"}}`, /EnableIPv6 is not supported with backend bgp: IPv6 is carried by the vxlan and host-gw backends/],
  ['IPv6-only with ipip', '{"EnableIPv4":false,"EnableIPv6":true,"IPv6Network":"fd00::/56","Backend":{"Type":"ipip"}}', /EnableIPv6 is not supported with backend ipip/],
  ['vxlan MTU below 1280 with IPv6', `{${V4}"EnableIPv6":true,"IPv6Network":"fd00::/56","Backend":{"Type":"vxlan","MTU":1200}}`, /Backend.MTU 1200 is below IPv6's minimum link MTU 1280/],
  ['EnableIPv6 not boolean', `{${V4}"EnableIPv6":"true","IPv6Network":"fd00::/56","Backend":{"Type":"vxlan"}}`, /EnableIPv6 must be true or false, got "true"/],
];

for (const [name, json, expected] of rejected) {
  test(`rejects: ${name}`, () => {
    try {
      parseNetworkConfig(json);
    } catch (err) {
      assert.instance(err, NetworkConfigError);
      assert.match((err as Error).message, expected);
      return;
    }
    assert.unreachable(`accepted ${json}`);
  });
}

test('formatNetworkConfig writes the IPv6 fields and round-trips dual-stack and IPv6-only configs', () => {
  const dual = formatNetworkConfig({ network: { address: 0x0af40000, prefixLength: 16 }, ipv6Network: parseCidr6('fd00:10:244::/56'), ipv6SubnetLen: 64 });
  assert.is(dual, '{"EnableIPv6":true,"Network":"10.244.0.0/16","IPv6Network":"fd00:10:244::/56","IPv6SubnetLen":64,"Backend":{"Type":"vxlan"}}');
  const only = formatNetworkConfig({ ipv6Only: true, ipv6Network: parseCidr6('fd00:10:244::/56') });
  assert.is(only, '{"EnableIPv4":false,"EnableIPv6":true,"IPv6Network":"fd00:10:244::/56","Backend":{"Type":"vxlan"}}');
  const parsed = parseNetworkConfig(only);
  assert.is(carriesIPv4(parsed), false);
  assert.is(parsed.ipv6!.subnetMin, parseIPv6('fd00:10:244:1::'));
  assert.throws(() => formatNetworkConfig({ ipv6Only: true }), /both false/);
  assert.throws(() => formatNetworkConfig({ network: { address: 0x0af40000, prefixLength: 16 }, ipv6Network: parseCidr6('fd00::/56'), backend: { type: 'ipip' } }), /not supported with backend ipip/);
});

test('networkConfigDifferences names the IPv6 fields that changed', () => {
  const a = parseNetworkConfig('{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan"}}');
  const b = parseNetworkConfig('{"Network":"10.244.0.0/16","EnableIPv6":true,"IPv6Network":"fd00::/56","Backend":{"Type":"vxlan"}}');
  const c = parseNetworkConfig('{"Network":"10.244.0.0/16","EnableIPv6":true,"IPv6Network":"fd00::/56","IPv6SubnetLen":96,"Backend":{"Type":"vxlan"}}');
  assert.equal(networkConfigDifferences(a, a), []);
  assert.equal(networkConfigDifferences(a, b), [
    'EnableIPv6 false -> true',
    'IPv6Network (none) -> fd00::/56',
    'IPv6SubnetLen (none) -> 64',
    'IPv6SubnetMin (none) -> fd00:0:0:1::',
    'IPv6SubnetMax (none) -> fd00:0:0:ff::',
  ]);
  assert.equal(networkConfigDifferences(b, c), ['IPv6SubnetLen 64 -> 96', 'IPv6SubnetMin fd00:0:0:1:: -> fd00::1:0:0', 'IPv6SubnetMax fd00:0:0:ff:: -> fd00::ff:ffff:ffff:0:0']);
});

test.run();
