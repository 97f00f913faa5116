import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { formatStatus } from '../../src/cli/commands/status';
import { agentStatus } from '../support/agent-status';

const test = suite('cli: status format');

const base = agentStatus();

test('node name, refused leases with their reasons, and a config mismatch', () => {
  const text = formatStatus({
    ...base,
    refusedLeases: [{ key: '/coreos.com/network/subnets/10.17.2.0-25', reason: 'overlaps 10.17.2.0/24 of 192.0.2.12' }],
    configMismatch: { stored: '{"Network":"10.18.0.0/16"}', differences: ['Network 10.17.0.0/16 -> 10.18.0.0/16'] },
  });
  assert.match(text, /^lease {4}10\.17\.1\.0\/24 node node-a public-ip 192\.0\.2\.11/);
  assert.match(text, /\nrefused leases \(1\)\n {2}\/coreos\.com\/network\/subnets\/10\.17\.2\.0-25: overlaps 10\.17\.2\.0\/24 of 192\.0\.2\.12\n/);
  assert.match(text, /\nCONFIG MISMATCH: .*Network 10\.17\.0\.0\/16 -> 10\.18\.0\.0\/16\n {2}stored {2}\{"Network":"10\.18\.0\.0\/16"\}\n/);
});

test('nothing about refusals, mismatches, trace clients or the address when all is well', () => {
  assert.not.match(formatStatus(base), /refused|MISMATCH|MISSING|trace /);
});

test('a missing underlay address and attached trace clients are shown', () => {
  const text = formatStatus({
    ...base,
    underlay: { ...base.underlay, addressPresent: false, problem: 'the underlay address 192.0.2.11 is on no interface of this host' },
    traceClients: [{ queuedBytes: 1048576, sentJourneys: 10, droppedJourneys: 5 }],
  });
  assert.match(text, /^underlay ADDRESS MISSING: the underlay address 192\.0\.2\.11 is on no interface of this host$/m);
  assert.match(text, /^trace    a client attached: 10 journeys sent, 5 dropped \(client too slow\), 1048576 bytes queued$/m);
});

test.run();
