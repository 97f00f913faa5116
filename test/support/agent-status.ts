// A minimal AgentStatus for tests of what is derived from it (status text, Prometheus metrics).
import type { AgentStatus } from '../../src/control/agent';

export function agentStatus(extra: Partial<AgentStatus> = {}): AgentStatus {
  return {
    lease: { subnet: '10.17.1.0/24', publicIp: '192.0.2.11', nodeName: 'node-a' },
    network: { network: '10.17.0.0/16', subnetLen: 24, backend: { type: 'host-gw' } } as AgentStatus['network'],
    underlay: { device: 'eth0', subnet: '192.0.2.0/24', mtu: 1500, addressPresent: true },
    storeConnected: true,
    refusedLeases: [],
    routes: [],
    neighbors: [],
    fdb: [],
    memory: { heapUsedBytes: 1, rssBytes: 1 },
    ...extra,
  };
}
