// The options an agent refuses before it touches the node (no lock taken, no store opened, no device made).
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { Agent, checkAgentOptions } from '../../src/control/agent';
import { nullLogger } from '../../src/control/log';
import { parseIPv4 } from '../../src/wire/address';

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
