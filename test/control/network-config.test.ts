import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { BackendConfig, formatNetworkConfig, parseNetworkConfig, NetworkConfig, NetworkConfigError } from '../../src/control/network-config';
import { formatCidr, formatIPv4, parseCidr, parseIPv4 } from '../../src/wire/address';

const test = suite('control: network config');

/** The parsed config in words, so a table row reads like the config it checks. */
function describe(c: NetworkConfig) {
  return {
    network: formatCidr(c.network),
    subnetLen: c.subnetLen,
    subnetMin: formatIPv4(c.subnetMin),
    subnetMax: formatIPv4(c.subnetMax),
    backend: c.backend,
  };
}

const VXLAN_DEFAULTS: BackendConfig = { type: 'vxlan', vni: 1, port: 8472, directRouting: false };

const accepted: Array<[string, string, ReturnType<typeof describe>]> = [
  [
    'FACTS.md example: a /16 of /24s, the first skipped (its .0 is the network address), the last kept',
    '{"Network":"10.17.0.0/16","SubnetLen":24,"Backend":{"Type":"vxlan","VNI":1}}',
    { network: '10.17.0.0/16', subnetLen: 24, subnetMin: '10.17.1.0', subnetMax: '10.17.255.0', backend: VXLAN_DEFAULTS },
  ],
  [
    'SubnetLen defaults to 24 for a /22',
    '{"Network":"10.17.0.0/22","Backend":{"Type":"vxlan"}}',
    { network: '10.17.0.0/22', subnetLen: 24, subnetMin: '10.17.1.0', subnetMax: '10.17.3.0', backend: VXLAN_DEFAULTS },
  ],
  [
    'SubnetLen defaults to prefix+2 for a network smaller than /22',
    '{"Network":"10.17.0.0/23","Backend":{"Type":"host-gw"}}',
    { network: '10.17.0.0/23', subnetLen: 25, subnetMin: '10.17.0.128', subnetMax: '10.17.1.128', backend: { type: 'host-gw' } },
  ],
  [
    'a /28 is the smallest network: four /30s',
    '{"Network":"10.17.0.0/28","Backend":{"Type":"host-gw"}}',
    { network: '10.17.0.0/28', subnetLen: 30, subnetMin: '10.17.0.4', subnetMax: '10.17.0.12', backend: { type: 'host-gw' } },
  ],
  [
    'SubnetLen 0 means the default',
    '{"Network":"10.0.0.0/8","SubnetLen":0,"Backend":{"Type":"ipip"}}',
    { network: '10.0.0.0/8', subnetLen: 24, subnetMin: '10.0.1.0', subnetMax: '10.255.255.0', backend: { type: 'ipip', directRouting: false } },
  ],
  [
    'explicit SubnetMin/SubnetMax, vxlan options',
    '{"Network":"10.17.0.0/16","SubnetLen":26,"SubnetMin":"10.17.4.0","SubnetMax":"10.17.8.192",' +
      '"Backend":{"Type":"vxlan","VNI":4096,"Port":4789,"DirectRouting":true,"MTU":1400}}',
    {
      network: '10.17.0.0/16',
      subnetLen: 26,
      subnetMin: '10.17.4.0',
      subnetMax: '10.17.8.192',
      backend: { type: 'vxlan', vni: 4096, port: 4789, directRouting: true, mtu: 1400 },
    },
  ],
  [
    'Port 0 means the kernel default 8472, VNI 0 is kept, SubnetMin 0.0.0.0 means unset',
    '{"Network":"10.17.0.0/16","SubnetMin":"0.0.0.0","Backend":{"Type":"vxlan","VNI":0,"Port":0}}',
    { network: '10.17.0.0/16', subnetLen: 24, subnetMin: '10.17.1.0', subnetMax: '10.17.255.0', backend: { type: 'vxlan', vni: 0, port: 8472, directRouting: false } },
  ],
  [
    'field names match case-insensitively, as Go encoding/json does; host bits of Network are cleared',
    '{"network":"10.17.3.0/16","subnetlen":24,"backend":{"type":"ipip","directrouting":true}}',
    { network: '10.17.0.0/16', subnetLen: 24, subnetMin: '10.17.1.0', subnetMax: '10.17.255.0', backend: { type: 'ipip', directRouting: true } },
  ],
];

for (const [name, json, expected] of accepted) {
  test(`accepts: ${name}`, () => {
    assert.equal(describe(parseNetworkConfig(json)), expected);
  });
}

const rejected: Array<[string, string, RegExp]> = [
  ['not JSON', '{"Network":', /network config: not valid JSON/],
  ['not an object', '[1,2]', /must be a JSON object, got \[1,2\]/],
  ['Network missing', '{"Backend":{"Type":"vxlan"}}', /Network is required/],
  ['Network not a string', '{"Network":17,"Backend":{"Type":"vxlan"}}', /Network must be a CIDR string, got 17/],
  ['Network not a CIDR', '{"Network":"10.17.0.0","Backend":{"Type":"vxlan"}}', /Network "10\.17\.0\.0" is not an IPv4 CIDR/],
  ['Network 0.0.0.0/0 is flannel\'s "empty"', '{"Network":"0.0.0.0/0","Backend":{"Type":"vxlan"}}', /Network "0\.0\.0\.0\/0" is empty/],
  ['Network loopback', '{"Network":"127.0.0.0/16","Backend":{"Type":"vxlan"}}', /Network 127\.0\.0\.0\/16 is in the loopback range \(127\.0\.0\.0\/8\): a pod network cannot be loopback, multicast or reserved/],
  ['Network multicast', '{"Network":"224.0.0.0/8","Backend":{"Type":"vxlan"}}', /Network 224\.0\.0\.0\/8 is in the multicast range \(224\.0\.0\.0\/4\)/],
  ['Network in 0.0.0.0/8', '{"Network":"0.0.0.0/8","Backend":{"Type":"vxlan"}}', /Network 0\.0\.0\.0\/8 is in the "this network" range \(0\.0\.0\.0\/8\)/],
  ['Network reserved', '{"Network":"240.0.0.0/4","Backend":{"Type":"vxlan"}}', /Network 240\.0\.0\.0\/4 is in the reserved range \(240\.0\.0\.0\/4\)/],
  ['Network with the broadcast address', '{"Network":"255.255.0.0/16","Backend":{"Type":"host-gw"}}', /Network 255\.255\.0\.0\/16 is in the reserved range/],
  ['Network taking in loopback', '{"Network":"96.0.0.0/3","Backend":{"Type":"vxlan"}}', /Network 96\.0\.0\.0\/3 takes in the loopback range \(127\.0\.0\.0\/8\)/],
  ['Network smaller than /28', '{"Network":"10.17.0.0/29","Backend":{"Type":"vxlan"}}', /Network 10\.17\.0\.0\/29 is too small/],
  ['SubnetLen over 30', '{"Network":"10.17.0.0/16","SubnetLen":31,"Backend":{"Type":"vxlan"}}', /SubnetLen 31 is too long/],
  ['SubnetLen leaves fewer than four subnets', '{"Network":"10.17.0.0/16","SubnetLen":17,"Backend":{"Type":"vxlan"}}', /SubnetLen 17 is too short for Network 10\.17\.0\.0\/16.*at least 18/],
  ['SubnetLen not an integer', '{"Network":"10.17.0.0/16","SubnetLen":"24","Backend":{"Type":"vxlan"}}', /SubnetLen must be an integer from 0 to 32, got "24"/],
  ['SubnetLen negative', '{"Network":"10.17.0.0/16","SubnetLen":-1,"Backend":{"Type":"vxlan"}}', /SubnetLen must be an integer from 0 to 32, got -1/],
  ['SubnetMin outside Network', '{"Network":"10.17.0.0/16","SubnetMin":"10.18.1.0","Backend":{"Type":"vxlan"}}', /SubnetMin 10\.18\.1\.0 is not in Network 10\.17\.0\.0\/16/],
  ['SubnetMax outside Network', '{"Network":"10.17.0.0/16","SubnetMax":"10.16.1.0","Backend":{"Type":"vxlan"}}', /SubnetMax 10\.16\.1\.0 is not in Network/],
  ['SubnetMin off boundary', '{"Network":"10.17.0.0/16","SubnetMin":"10.17.1.5","Backend":{"Type":"vxlan"}}', /SubnetMin 10\.17\.1\.5 is not on a SubnetLen boundary \(\/24\)/],
  ['SubnetMax off boundary', '{"Network":"10.17.0.0/16","SubnetMax":"10.17.9.128","Backend":{"Type":"vxlan"}}', /SubnetMax 10\.17\.9\.128 is not on a SubnetLen boundary/],
  ['SubnetMin not an address', '{"Network":"10.17.0.0/16","SubnetMin":"ten","Backend":{"Type":"vxlan"}}', /SubnetMin "ten" is not an IPv4 address/],
  ['SubnetMin above SubnetMax', '{"Network":"10.17.0.0/16","SubnetMin":"10.17.9.0","SubnetMax":"10.17.8.0","Backend":{"Type":"vxlan"}}', /SubnetMin 10\.17\.9\.0 is above SubnetMax 10\.17\.8\.0/],
  ['Backend absent: flannel means udp', '{"Network":"10.17.0.0/16"}', /^unknown backend type "udp" \(vxtun supports vxlan, ipip, host-gw, bgp\)$/],
  ['Backend udp', '{"Network":"10.17.0.0/16","Backend":{"Type":"udp"}}', /^unknown backend type "udp" \(vxtun supports vxlan, ipip, host-gw, bgp\)$/],
  ['Backend wireguard', '{"Network":"10.17.0.0/16","Backend":{"Type":"wireguard"}}', /unknown backend type "wireguard"/],
  ['Backend without Type', '{"Network":"10.17.0.0/16","Backend":{}}', /unknown backend type ""/],
  ['Backend not an object', '{"Network":"10.17.0.0/16","Backend":"vxlan"}', /Backend must be an object.*got "vxlan"/],
  ['Backend.Type not a string', '{"Network":"10.17.0.0/16","Backend":{"Type":1}}', /Backend.Type must be a string, got 1/],
  ['VNI too large', '{"Network":"10.17.0.0/16","Backend":{"Type":"vxlan","VNI":16777216}}', /Backend.VNI must be an integer from 0 to 16777215, got 16777216/],
  ['VNI fractional', '{"Network":"10.17.0.0/16","Backend":{"Type":"vxlan","VNI":1.5}}', /Backend.VNI must be an integer.*got 1.5/],
  ['Port too large', '{"Network":"10.17.0.0/16","Backend":{"Type":"vxlan","Port":70000}}', /Backend.Port must be an integer from 0 to 65535, got 70000/],
  ['DirectRouting not boolean', '{"Network":"10.17.0.0/16","Backend":{"Type":"vxlan","DirectRouting":"yes"}}', /Backend.DirectRouting must be true or false, got "yes"/],
  ['ipip DirectRouting not boolean', '{"Network":"10.17.0.0/16","Backend":{"Type":"ipip","DirectRouting":1}}', /Backend.DirectRouting must be true or false, got 1/],
  ['MTU too small', '{"Network":"10.17.0.0/16","Backend":{"Type":"vxlan","MTU":40}}', /Backend.MTU must be at least 68.*got 40/],
  ['GBP unsupported', '{"Network":"10.17.0.0/16","Backend":{"Type":"vxlan","GBP":true}}', /Backend.GBP true is not supported/],
  ['EnableIPv6 without IPv6Network', '{"Network":"10.17.0.0/16","EnableIPv6":true,"Backend":{"Type":"vxlan"}}', /EnableIPv6 is true but IPv6Network is missing/],
  ['EnableIPv4 false without IPv6', '{"Network":"10.17.0.0/16","EnableIPv4":false,"Backend":{"Type":"vxlan"}}', /EnableIPv4 and EnableIPv6 are both false/],
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

test('formatNetworkConfig writes flannel JSON with only the given fields', () => {
  const json = formatNetworkConfig({
    network: parseCidr('10.17.0.0/16'),
    subnetLen: 24,
    backend: { type: 'vxlan', vni: 1, port: 4789 },
  });
  assert.is(json, '{"Network":"10.17.0.0/16","SubnetLen":24,"Backend":{"Type":"vxlan","VNI":1,"Port":4789}}');
  const parsed = parseNetworkConfig(json);
  assert.equal(parsed.backend, { type: 'vxlan', vni: 1, port: 4789, directRouting: false });
});

test('formatNetworkConfig: defaults to vxlan, writes bounds and options, round-trips a parsed config', () => {
  assert.is(formatNetworkConfig({ network: parseCidr('10.17.0.0/16') }), '{"Network":"10.17.0.0/16","Backend":{"Type":"vxlan"}}');
  assert.is(
    formatNetworkConfig({ network: parseCidr('10.17.0.0/16'), backend: { type: 'ipip', directRouting: true } }),
    '{"Network":"10.17.0.0/16","Backend":{"Type":"ipip","DirectRouting":true}}',
  );
  const full = parseNetworkConfig(
    '{"Network":"10.17.0.0/16","SubnetLen":26,"SubnetMin":"10.17.4.0","SubnetMax":"10.17.8.192","Backend":{"Type":"vxlan","VNI":7,"MTU":1400}}',
  );
  assert.equal(parseNetworkConfig(formatNetworkConfig(full)), full);
  assert.is(parseIPv4('10.17.4.0'), full.subnetMin);
});

test('formatNetworkConfig refuses what parse would refuse', () => {
  assert.throws(() => formatNetworkConfig({ network: parseCidr('10.17.0.0/16'), subnetLen: 31 }), /SubnetLen 31 is too long/);
  assert.throws(
    () => formatNetworkConfig({ network: parseCidr('10.17.0.0/16'), backend: { type: 'vxlan', vni: -1 } }),
    /Backend.VNI must be an integer from 0 to 16777215, got -1/,
  );
});

test.run();
