import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { AgentStatus } from '../../src/control/agent';
import { formatMetrics } from '../../src/control/metrics';

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

test('metrics: refused leases and a config mismatch are gauges, 0 when all is well', () => {
  const healthy = formatMetrics(status({}));
  assert.match(healthy, /\nvxtun_refused_leases 0\n/);
  assert.match(healthy, /\nvxtun_config_mismatch 0\n/);
  const troubled = formatMetrics(
    status({
      refusedLeases: [{ key: 'k1', reason: 'r' }, { key: 'k2', reason: 'r' }],
      configMismatch: { stored: '(deleted)', differences: ['the network config was deleted from the store'] },
    }),
  );
  assert.match(troubled, /\nvxtun_refused_leases 2\n/);
  assert.match(troubled, /\nvxtun_config_mismatch 1\n/);
});

test.run();
