// The options an agent refuses before it touches the node (no lock taken, no store opened, no device made).
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { Agent, agentConfigProblem, checkAgentOptions } from '../../src/control/agent';
import { nullLogger } from '../../src/control/log';
import { parseNetworkConfig } from '../../src/control/network-config';
import { deriveVtepMac, deriveVtepMac6 } from '../../src/control/vtep-mac';
import { parseIPv4 } from '../../src/wire/address';
import { parseIPv6 } from '../../src/wire/address6';

const test = suite('control: agent options');

test('--public-ip must be an address other nodes can reach', () => {
  const refused: Array<[string, RegExp]> = [
    ['127.0.0.1', /^--public-ip 127\.0\.0\.1 is a loopback address \(127\.0\.0\.0\/8\): other nodes cannot reach this node there/],
    ['0.0.0.0', /^--public-ip 0\.0\.0\.0 is the unspecified address:/],
    ['224.0.0.5', /^--public-ip 224\.0\.0\.5 is a multicast address \(224\.0\.0\.0\/4\):/],
    ['255.255.255.255', /^--public-ip 255\.255\.255\.255 is the broadcast address:/],
    ['240.1.2.3', /^--public-ip 240\.1\.2\.3 is a reserved address \(240\.0\.0\.0\/4\):/],
  ];
  for (const [ip, expected] of refused) {
    assert.throws(() => checkAgentOptions({ publicIp: parseIPv4(ip) }), expected, ip);
  }
  for (const ip of ['192.0.2.11', '10.0.0.1', '169.254.1.1', '223.255.255.254', '1.0.0.0']) checkAgentOptions({ publicIp: parseIPv4(ip) });
});

test('--public-ipv6 must be an IPv6 address other nodes can reach', () => {
  const publicIp = parseIPv4('192.0.2.11');
  const refused: Array<[string, RegExp]> = [
    ['::', /^--public-ipv6 :: is the unspecified address: other nodes cannot reach this node there/],
    ['::1', /^--public-ipv6 ::1 is the loopback address:/],
    ['fe80::1', /^--public-ipv6 fe80::1 is in the link-local range \(fe80::\/10\):/],
    ['ff02::1', /^--public-ipv6 ff02::1 is in the multicast range \(ff00::\/8\):/],
    ['::ffff:192.0.2.11', /^--public-ipv6 ::ffff:c000:20b is in the IPv4-mapped range/],
  ];
  for (const [ip, expected] of refused) assert.throws(() => checkAgentOptions({ publicIp, publicIpv6: parseIPv6(ip) }), expected, ip);
  for (const ip of ['2001:db8::11', 'fd00:1::2']) checkAgentOptions({ publicIp, publicIpv6: parseIPv6(ip) });
});

test('agentConfigProblem: IPv6-only, host-gw with IPv6 without --public-ipv6, --public-ipv6 without IPv6 in the network', () => {
  const v6only = parseNetworkConfig('{"EnableIPv4":false,"EnableIPv6":true,"IPv6Network":"fd00::/56","Backend":{"Type":"vxlan"}}');
  const hostGw6 = parseNetworkConfig('{"Network":"10.244.0.0/16","EnableIPv6":true,"IPv6Network":"fd00::/56","Backend":{"Type":"host-gw"}}');
  const v4 = parseNetworkConfig('{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan"}}');
  const dual = parseNetworkConfig('{"Network":"10.244.0.0/16","EnableIPv6":true,"IPv6Network":"fd00::/56","Backend":{"Type":"vxlan"}}');
  const v4ip = { publicIp: parseIPv4('192.0.2.11') };
  assert.match(agentConfigProblem(v6only, {})!, /^the network is IPv6-only \("EnableIPv4": false\): pass --public-ipv6 .*--public-ip is not needed/);
  assert.match(agentConfigProblem(v6only, v4ip)!, /IPv6-only .*pass --public-ipv6/, '--public-ip alone is not an IPv6 underlay');
  assert.match(agentConfigProblem(hostGw6, v4ip)!, /host-gw with IPv6 routes every IPv6 subnet via its node's PublicIPv6 \(as flannel does\): pass --public-ipv6/);
  assert.is(agentConfigProblem(hostGw6, { ...v4ip, publicIpv6: parseIPv6('2001:db8::1') }), undefined);
  assert.match(agentConfigProblem(v4, { ...v4ip, publicIpv6: parseIPv6('2001:db8::1') })!, /--public-ipv6 was given but the network carries no IPv6/);
  assert.is(agentConfigProblem(dual, { ...v4ip, publicIpv6: parseIPv6('2001:db8::1') }), undefined);
  assert.is(agentConfigProblem(dual, v4ip), undefined);
  assert.is(agentConfigProblem(v4, v4ip), undefined);
});

test('agentConfigProblem: an IPv6-only network runs with --public-ipv6 alone; a network with IPv4 needs --public-ip', () => {
  const v6 = parseIPv6('2001:db8:1::11');
  const v6only = parseNetworkConfig('{"EnableIPv4":false,"EnableIPv6":true,"IPv6Network":"fd00::/56","Backend":{"Type":"vxlan"}}');
  const hostGw6only = parseNetworkConfig('{"EnableIPv4":false,"EnableIPv6":true,"IPv6Network":"fd00::/56","Backend":{"Type":"host-gw"}}');
  const v4 = parseNetworkConfig('{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan"}}');
  const dual = parseNetworkConfig('{"Network":"10.244.0.0/16","EnableIPv6":true,"IPv6Network":"fd00::/56","Backend":{"Type":"vxlan"}}');
  assert.is(agentConfigProblem(v6only, { publicIpv6: v6 }), undefined);
  assert.is(agentConfigProblem(v6only, { publicIp: parseIPv4('192.0.2.11'), publicIpv6: v6 }), undefined, 'a --public-ip given too is ignored (warned), not refused');
  assert.is(agentConfigProblem(hostGw6only, { publicIpv6: v6 }), undefined, 'host-gw IPv6-only: routes via PublicIPv6');
  for (const config of [v4, dual]) {
    assert.match(agentConfigProblem(config, { publicIpv6: v6 })!, /^the network carries IPv4: pass --public-ip .*only an IPv6-only network/);
  }
});

test('checkAgentOptions: one underlay address at least; --public-ipv6 alone is checked as the IPv6 one', () => {
  assert.throws(() => checkAgentOptions({}), /^pass --public-ip .* --public-ipv6/);
  checkAgentOptions({ publicIpv6: parseIPv6('2001:db8:1::11') });
  assert.throws(() => checkAgentOptions({ publicIpv6: parseIPv6('::1') }), /^--public-ipv6 ::1 is the loopback address/);
});

test('the IPv6 VTEP MAC is stable, unicast, locally administered, and not the IPv4 one', () => {
  for (const name of ['node-a', 'node-b', '192.0.2.11']) {
    const mac6 = deriveVtepMac6(name);
    assert.is(mac6, deriveVtepMac6(name));
    assert.is.not(mac6, deriveVtepMac(name));
    const first = Math.floor(mac6 / 2 ** 40);
    assert.is(first & 0x03, 0x02, 'locally administered, not multicast');
  }
  assert.is.not(deriveVtepMac6('node-a'), deriveVtepMac6('node-b'));
});

test('Agent.start refuses such an address before it opens the store', async () => {
  try {
    await Agent.start({
      storeUrl: 'nonsense://', prefix: '/coreos.com/network', publicIp: parseIPv4('127.0.0.1'), tunName: 'vxt-never',
      subnetFile: '/nonexistent/subnet.env', leaseTtlSeconds: 60, log: nullLogger,
    });
  } catch (err) {
    assert.match((err as Error).message, /^--public-ip 127\.0\.0\.1 is a loopback address/);
    return;
  }
  assert.unreachable('started');
});

test.run();
