// subnet.env's IPv6 lines in flannel's form (pkg/subnet/subnetfile_unix.go WriteSubnetFile: FLANNEL_IPV6_NETWORK and
// FLANNEL_IPV6_SUBNET with the first usable address, after the IPv4 pair; an IPv6-only node writes no IPv4 pair).
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { formatSubnetEnv, parseSubnetEnv } from '../../src/control/subnet-env';
import { parseCidr } from '../../src/wire/address';
import { parseCidr6 } from '../../src/wire/address6';

const test = suite('control: subnet.env, IPv6');

const DUAL = {
  network: parseCidr('10.244.0.0/16'),
  subnet: parseCidr('10.244.1.0/24'),
  network6: parseCidr6('fd00:10:244::/56'),
  subnet6: parseCidr6('fd00:10:244:1::/64'),
  mtu: 1450,
  ipMasq: true,
};

test('dual stack: both pairs, first usable addresses, flannel line order; read back equal', () => {
  const text = formatSubnetEnv(DUAL);
  assert.is(
    text,
    'FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.1.1/24\nFLANNEL_IPV6_NETWORK=fd00:10:244::/56\nFLANNEL_IPV6_SUBNET=fd00:10:244:1::1/64\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n',
  );
  assert.equal(parseSubnetEnv(text), DUAL);
});

test('IPv6 only: no IPv4 lines; read back with the 0.0.0.0/0 placeholder', () => {
  const env = { ...DUAL, network: { address: 0, prefixLength: 0 }, subnet: { address: 0, prefixLength: 0 } };
  const text = formatSubnetEnv(env);
  assert.is(text, 'FLANNEL_IPV6_NETWORK=fd00:10:244::/56\nFLANNEL_IPV6_SUBNET=fd00:10:244:1::1/64\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n');
  assert.equal(parseSubnetEnv(text), env);
});

test('bad IPv6 lines are named with their line; a lone IPv6 line names no previous subnet', () => {
  const lone = parseSubnetEnv('FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.1.1/24\nFLANNEL_IPV6_NETWORK=fd00::/56\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n');
  assert.is(lone.subnet6, undefined);
  assert.throws(() => parseSubnetEnv('FLANNEL_IPV6_SUBNET=fd00::1/64\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n'), /FLANNEL_IPV6_NETWORK is missing/);
  assert.throws(
    () => parseSubnetEnv('FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.1.1/24\nFLANNEL_IPV6_NETWORK=10.0.0.0/8\nFLANNEL_IPV6_SUBNET=fd00::1/64\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n'),
    /line 3: FLANNEL_IPV6_NETWORK must be an IPv6 CIDR/,
  );
  assert.throws(() => parseSubnetEnv('FLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n'), /FLANNEL_NETWORK is missing/);
});

test.run();
