import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { formatStatus } from '../../src/cli/commands/status';
import type { AgentStatus } from '../../src/control/agent';

const test = suite('cli: status format');

const base: AgentStatus = {
  lease: { subnet: '10.17.1.0/24', publicIp: '192.0.2.11' },
  network: { network: '10.17.0.0/16', subnetLen: 24, backend: { type: 'host-gw' } } as AgentStatus['network'],
  underlay: { device: 'eth0', subnet: '192.0.2.0/24', mtu: 1500, addressPresent: true },
  storeConnected: true,
  routes: [],
  neighbors: [],
  fdb: [],
  memory: { heapUsedBytes: 1, rssBytes: 1 },
};

test('a missing underlay address and attached trace clients are shown; a present address adds nothing', () => {
  assert.not.match(formatStatus(base), /MISSING|trace /);
  const text = formatStatus({
    ...base,
    underlay: { ...base.underlay, addressPresent: false, problem: 'the underlay address 192.0.2.11 is on no interface of this host' },
    traceClients: [{ queuedBytes: 1048576, sentJourneys: 10, droppedJourneys: 5 }],
  });
  assert.match(text, /^underlay ADDRESS MISSING: the underlay address 192\.0\.2\.11 is on no interface of this host$/m);
  assert.match(text, /^trace    a client attached: 10 journeys sent, 5 dropped \(client too slow\), 1048576 bytes queued$/m);
});

test.run();
