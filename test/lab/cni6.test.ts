// The CNI side of IPv6 pods without root (issue 12): subnet.env with flannel's IPv6 lines, the delegate configuration
// flannel's CNI plugin builds for dual-stack and IPv6-only (flannel-io/cni-plugin flannel_linux.go getDelegateIPAM:
// one range set per family, one route per network), and IPv6 addresses in plugin results.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { flannelDelegateConfig, parseCniResult, parseFlannelEnv, podAddress6Of, podAddressOf } from '../../src/lab/cni';
import { parseCidr } from '../../src/wire/address';
import { parseCidr6 } from '../../src/wire/address6';

const Cni6 = suite('CNI: IPv6 subnet.env, dual-stack and IPv6-only delegate config, IPv6 results');

const DUAL = 'FLANNEL_NETWORK=10.17.0.0/16\nFLANNEL_SUBNET=10.17.3.1/24\nFLANNEL_IPV6_NETWORK=fd00:17::/56\n' +
  'FLANNEL_IPV6_SUBNET=fd00:17:0:3::1/64\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n';

Cni6('subnet.env: both pairs, one pair, and the malformed cases named by key', () => {
  const dual = parseFlannelEnv(DUAL);
  assert.equal(dual.subnet, parseCidr('10.17.3.0/24'));
  assert.equal(dual.ipv6Subnet, parseCidr6('fd00:17:0:3::/64'), 'the first usable address read back as its subnet');
  assert.equal(dual.ipv6Network, parseCidr6('fd00:17::/56'));
  const v6only = parseFlannelEnv('FLANNEL_IPV6_NETWORK=fd00:17::/56\nFLANNEL_IPV6_SUBNET=fd00:17:0:3::1/64\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=false\n');
  assert.is(v6only.subnet, undefined);
  assert.is(v6only.ipMasq, false);
  assert.throws(() => parseFlannelEnv('FLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n'), /neither FLANNEL_SUBNET nor FLANNEL_IPV6_SUBNET/);
  assert.throws(() => parseFlannelEnv(DUAL.replace('fd00:17:0:3::1/64', 'fd00:17:0:3::zz/64')), /FLANNEL_IPV6_SUBNET must be an IPv6 address/);
  assert.throws(() => parseFlannelEnv(DUAL.replace(/FLANNEL_IPV6_NETWORK=.*\n/, '')), /FLANNEL_IPV6_NETWORK and FLANNEL_IPV6_SUBNET go together/);
  assert.throws(() => parseFlannelEnv(DUAL.replace('FLANNEL_MTU=1450', 'FLANNEL_MTU=9x')), /FLANNEL_MTU must be an integer/);
});

Cni6('dual-stack: an IPv4 range set then an IPv6 one, both cluster routes; IPv6-only: the IPv6 ones alone', () => {
  const dual = flannelDelegateConfig(parseFlannelEnv(DUAL));
  assert.equal(dual.ipam, {
    type: 'host-local',
    ranges: [[{ subnet: '10.17.3.0/24' }], [{ subnet: 'fd00:17:0:3::/64' }]],
    routes: [{ dst: '10.17.0.0/16' }, { dst: 'fd00:17::/56' }],
  });
  const v6 = flannelDelegateConfig(parseFlannelEnv('FLANNEL_IPV6_NETWORK=fd00:17::/56\nFLANNEL_IPV6_SUBNET=fd00:17:0:3::1/64\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n'));
  assert.equal(v6.ipam, { type: 'host-local', ranges: [[{ subnet: 'fd00:17:0:3::/64' }]], routes: [{ dst: 'fd00:17::/56' }] });
});

Cni6('a dual-stack result: each family found and checked against its subnet', () => {
  const result = parseCniResult(JSON.stringify({
    cniVersion: '1.0.0',
    interfaces: [{ name: 'cni0' }, { name: 'veth1' }, { name: 'eth0', sandbox: '/var/run/netns/p' }],
    ips: [
      { interface: 2, address: '10.17.3.2/24', gateway: '10.17.3.1' },
      { interface: 2, address: 'fd00:17:0:3::2/64', gateway: 'fd00:17:0:3::1' },
    ],
  }));
  assert.equal(podAddressOf(result, 'eth0', parseCidr('10.17.3.0/24')), { address: '10.17.3.2', prefixLength: 24, gateway: '10.17.3.1' });
  assert.equal(podAddress6Of(result, 'eth0', parseCidr6('fd00:17:0:3::/64')), { address: 'fd00:17:0:3::2', prefixLength: 64, gateway: 'fd00:17:0:3::1' });
  assert.throws(() => podAddress6Of(result, 'eth0', parseCidr6('fd00:17:0:4::/64')), /outside the node's IPv6 subnet/);
  const v4only = parseCniResult(JSON.stringify({ cniVersion: '1.0.0', interfaces: [{ name: 'eth0', sandbox: 'x' }], ips: [{ interface: 0, address: '10.17.3.2/24' }] }));
  assert.throws(() => podAddress6Of(v4only, 'eth0', parseCidr6('fd00:17:0:3::/64')), /no IPv6 address/);
  assert.throws(() => parseCniResult(JSON.stringify({ cniVersion: '1.0.0', interfaces: [{ name: 'eth0' }], ips: [{ address: 'fd00::zz/64' }] })), /nor an IPv6 one/);
});

Cni6.run();
