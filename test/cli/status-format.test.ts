import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { AgentStatus } from '../../src/control/agent';
import { formatStatus } from '../../src/cli/commands/status';

function status(extra: Partial<AgentStatus>): AgentStatus {
  return {
    lease: { subnet: '10.17.1.0/24', publicIp: '192.0.2.11', nodeName: 'node-a' },
    network: { network: '10.17.0.0/16', subnetLen: 24, backend: { type: 'host-gw' } },
    underlay: { device: 'eth0', subnet: '192.0.2.0/24', mtu: 1500 },
    storeConnected: true,
    refusedLeases: [],
    routes: [],
    neighbors: [],
    fdb: [],
    memory: { heapUsedBytes: 0, rssBytes: 0 },
    ...extra,
  };
}

test('status text: node name, refused leases with their reasons, and a config mismatch', () => {
  const text = formatStatus(
    status({
      refusedLeases: [{ key: '/coreos.com/network/subnets/10.17.2.0-25', reason: 'overlaps 10.17.2.0/24 of 192.0.2.12' }],
      configMismatch: { stored: '{"Network":"10.18.0.0/16"}', differences: ['Network 10.17.0.0/16 -> 10.18.0.0/16'] },
    }),
  );
  assert.match(text, /^lease {4}10\.17\.1\.0\/24 node node-a public-ip 192\.0\.2\.11/);
  assert.match(text, /\nrefused leases \(1\)\n {2}\/coreos\.com\/network\/subnets\/10\.17\.2\.0-25: overlaps 10\.17\.2\.0\/24 of 192\.0\.2\.12\n/);
  assert.match(text, /\nCONFIG MISMATCH: .*Network 10\.17\.0\.0\/16 -> 10\.18\.0\.0\/16\n {2}stored {2}\{"Network":"10\.18\.0\.0\/16"\}\n/);
});

test('status text: nothing about refusals or mismatches when there are none', () => {
  const text = formatStatus(status({}));
  assert.not.match(text, /refused|MISMATCH/);
});

test.run();
