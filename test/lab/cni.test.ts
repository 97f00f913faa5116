// The CNI side of the lab without root: flannel's delegate configuration from subnet.env, and the checks on what a
// plugin answers (results, errors). The plugins themselves run in test/net/pods.test.ts.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { flannelDelegateConfig, invokeCni, parseCniError, parseCniResult, podAddressOf } from '../../src/lab/cni';
import { parseSubnetEnv } from '../../src/control/subnet-env';
import { parseCidr } from '../../src/wire/address';

const Cni = suite('CNI: flannel delegate config, results and errors');

const env = parseSubnetEnv('FLANNEL_NETWORK=10.17.0.0/16\nFLANNEL_SUBNET=10.17.3.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n');

Cni("the delegate config is what flannel's CNI plugin builds from subnet.env and kube-flannel's delegate section", () => {
  assert.equal(flannelDelegateConfig(env), {
    hairpinMode: true,
    isDefaultGateway: true,
    name: 'cbr0',
    type: 'bridge',
    ipMasq: false, // !FLANNEL_IPMASQ: flanneld masquerades, the bridge plugin must not
    mtu: 1450,
    isGateway: true,
    cniVersion: '1.0.0',
    ipam: { type: 'host-local', ranges: [[{ subnet: '10.17.3.0/24' }]], routes: [{ dst: '10.17.0.0/16' }] },
  });
  const noMasq = flannelDelegateConfig({ ...env, ipMasq: false }, { ipamDataDir: '/run/x/networks' });
  assert.is(noMasq.ipMasq, true, 'FLANNEL_IPMASQ=false: the bridge plugin masquerades');
  assert.is((noMasq.ipam as { dataDir: string }).dataDir, '/run/x/networks');
  // Keys the network config's delegate section sets win, as in the plugin (hasKey checks).
  const own = flannelDelegateConfig(env, { delegate: { type: 'bridge', mtu: 1400, ipMasq: true, isGateway: false, bridge: 'kbr0' } });
  assert.equal([own.mtu, own.ipMasq, own.isGateway, own.bridge], [1400, true, false, 'kbr0']);
});

const result = {
  cniVersion: '1.0.0',
  interfaces: [
    { name: 'cni0', mac: '5a:00:00:00:00:01' },
    { name: 'veth1234', mac: '5a:00:00:00:00:02' },
    { name: 'eth0', mac: '5a:00:00:00:00:03', sandbox: '/var/run/netns/vxt-x-n1-p1' },
  ],
  ips: [{ interface: 2, address: '10.17.3.2/24', gateway: '10.17.3.1' }],
  routes: [{ dst: '10.17.0.0/16' }, { dst: '0.0.0.0/0', gw: '10.17.3.1' }],
  dns: {},
};

Cni('a result is checked: shape, addresses, interface indexes; the pod address must be in the node subnet', () => {
  const parsed = parseCniResult(JSON.stringify(result));
  assert.equal(podAddressOf(parsed, 'eth0', parseCidr('10.17.3.0/24')), { address: '10.17.3.2', prefixLength: 24, gateway: '10.17.3.1' });
  assert.throws(() => podAddressOf(parsed, 'eth0', parseCidr('10.17.4.0/24')), /outside the node's subnet 10\.17\.4\.0\/24/);
  assert.throws(() => parseCniResult('not json'), /not JSON/);
  assert.throws(() => parseCniResult('{"interfaces":[]}'), /no cniVersion/);
  assert.throws(() => parseCniResult(JSON.stringify({ ...result, ips: [] })), /no "ips"/);
  assert.throws(() => parseCniResult(JSON.stringify({ ...result, ips: [{ address: '10.17.3.2', interface: 2 }] })), /not an IPv4 address with prefix/);
  assert.throws(() => parseCniResult(JSON.stringify({ ...result, ips: [{ address: '10.17.3.2/24', interface: 7 }] })), /names interface 7/);
});

Cni("a plugin's error object is read; a missing plugin says what to install", async () => {
  assert.equal(parseCniError('{"cniVersion":"1.0.0","code":7,"msg":"failed to allocate","details":"range full"}'), { code: 7, msg: 'failed to allocate', details: 'range full' });
  assert.is(parseCniError('plain text'), undefined);
  try {
    await invokeCni({ command: 'ADD', containerId: 'c1', netnsPath: '/var/run/netns/none', ifName: 'eth0', config: { type: 'bridge' }, binDir: '/nonexistent' });
    assert.unreachable('a missing plugin must be refused');
  } catch (error) {
    assert.match((error as Error).message, /apt-get install containernetworking-plugins/);
  }
  try {
    await invokeCni({ command: 'ADD', containerId: 'bad id', netnsPath: '/x', ifName: 'eth0', config: { type: 'bridge' } });
    assert.unreachable('an invalid container id must be refused');
  } catch (error) {
    assert.match((error as Error).message, /invalid CNI_CONTAINERID/);
  }
});

Cni.run();
