// IPv6 in `vxtun status` (text as `ip -6 route` / `ip -6 neigh` / `bridge fdb` print flannel-v6's entries, and JSON)
// and in the Prometheus metrics: tables filled by LeaseSync from dual-stack leases, IPv6 drop stages counted generically.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { formatStatus } from '../../src/cli/commands/status';
import { type AgentStatus, ipv6TablesStatus } from '../../src/control/agent';
import type { Lease } from '../../src/control/lease';
import { LeaseSync } from '../../src/control/lease-sync';
import { nullLogger } from '../../src/control/log';
import { formatMetrics } from '../../src/control/metrics';
import { Counters } from '../../src/dataplane/counters';
import { ForwardingTables } from '../../src/dataplane/tables';
import { parseCidr, parseIPv4 } from '../../src/wire/address';
import { parseCidr6, parseIPv6 } from '../../src/wire/address6';
import { agentStatus } from '../support/agent-status';

const test = suite('cli: status and metrics, IPv6');

function dualLease(n: number, publicIpv6?: string): Lease {
  return {
    subnet: parseCidr(`10.244.${n}.0/24`),
    subnet6: parseCidr6(`fd00:10:244:${n}::/64`),
    attrs: {
      publicIp: parseIPv4(`192.0.2.${n}`),
      ...(publicIpv6 ? { publicIpv6: parseIPv6(publicIpv6) } : {}),
      backendType: 'vxlan',
      backendData: { vni: 1, vtepMac: 0x020000000000 + n },
      backendV6Data: { vni: 1, vtepMac: 0x020000000100 + n },
    },
  };
}

function dualStatus(): AgentStatus {
  const tables = new ForwardingTables();
  new LeaseSync({ tables }, parseCidr('10.244.1.0/24'), 'vxlan', nullLogger, undefined, { ownSubnet6: parseCidr6('fd00:10:244:1::/64'), underlay6: true })
    .applySnapshot([dualLease(2, '2001:db8::2'), dualLease(3)]);
  const counters = new Counters(64);
  // Stage/reason pairs the engine counts for IPv6 (src/dataplane: route6, inner-ipv6, ndp, underlay6).
  counters.drops.count('route6', 'no-match', 3);
  counters.drops.count('inner-ipv6', 'spoofed-source');
  counters.drops.count('ndp', 'not-for-us', 2);
  counters.drops.count('underlay6', 'no-socket');
  counters.drops.count('tun-ipv4', 'no-route');
  return agentStatus({
    lease: { subnet: '10.244.1.0/24', publicIp: '192.0.2.1', vtepMac: '02:00:00:00:00:01', subnet6: 'fd00:10:244:1::/64', publicIpv6: '2001:db8::1', vtepMac6: '02:00:00:00:01:01' },
    network: { network: '10.244.0.0/16', subnetLen: 24, ipv6Network: 'fd00:10:244::/56', ipv6SubnetLen: 64, backend: { type: 'vxlan', vni: 1, port: 8472, directRouting: false } },
    tun: { name: 'vxtun0', mtu: 1430, kernelQueueDrops: 0 },
    neighbors: [],
    fdb: [...tables.fdb].map(([mac, dst]) => ({ mac: mac.toString(16), dst: String(dst) })),
    ...ipv6TablesStatus(tables),
    counters: counters.toJSON(),
    pool: { capacity: 256, inUse: 3, lowWater: 200 },
  });
}

test('the device line says how the TUN is used: offloads, readv or io_uring, busy-poll', () => {
  const s = dualStatus();
  s.tun = { name: 'vxtun0', mtu: 1430, kernelQueueDrops: 0, offload: true, uso: true, io: 'uring', busyPollUs: 200 };
  assert.match(formatStatus(s), /^device {3}vxtun0 mtu 1430, offload on \(TSO, USO\), io uring, busy-poll 200 us, kernel queue drops 0/m);
  s.tun = { name: 'vxtun0', mtu: 1430, kernelQueueDrops: 0, offload: false, uso: false, io: 'readv', busyPollUs: 0 };
  assert.match(formatStatus(s), /^device {3}vxtun0 mtu 1430, offload off, io readv, kernel queue drops 0/m);
});

test('ipv6TablesStatus lists routes6, neighbors6 and fdb6 as iproute2 spells them; JSON carries them', () => {
  const s = dualStatus();
  assert.equal(s.routes6!.map((r) => `${r.subnet} via ${r.via}`).sort(), ['fd00:10:244:2::/64 via fd00:10:244:2::', 'fd00:10:244:3::/64 via fd00:10:244:3::']);
  assert.equal(s.neighbors6!.map((n) => `${n.address} ${n.mac}`).sort(), ['fd00:10:244:2:: 02:00:00:00:01:02', 'fd00:10:244:3:: 02:00:00:00:01:03']);
  assert.equal(s.fdb6, [{ mac: '02:00:00:00:01:02', dst: '2001:db8::2' }], 'the lease without PublicIPv6 rides the IPv4 underlay: not in fdb6');
  const json = JSON.parse(JSON.stringify(s)) as AgentStatus;
  assert.equal(json.routes6, s.routes6);
  assert.equal(json.lease.subnet6, 'fd00:10:244:1::/64');
  assert.equal(ipv6TablesStatus(undefined), { routes6: [], neighbors6: [], fdb6: [] });
});

test('status text: lease6, the IPv6 network, and the three IPv6 tables; IPv6 drop stages listed', () => {
  const text = formatStatus(dualStatus());
  assert.match(text, /^lease6   fd00:10:244:1::\/64 public-ipv6 2001:db8::1 vtep-mac 02:00:00:00:01:01$/m);
  assert.match(text, /^network  10\.244\.0\.0\/16 subnet-len 24 ipv6 fd00:10:244::\/56 subnet-len 64 backend vxlan vni 1 port 8472$/m);
  assert.match(text, /\nroutes6 \(2\)\n {2}fd00:10:244:[23]::\/64 via fd00:10:244:[23]:: dev vxtun0 onlink encap vxlan\n/);
  assert.match(text, /^ {2}fd00:10:244:2:: dev vxtun0 lladdr 02:00:00:00:01:02 PERMANENT$/m);
  assert.match(text, /\nfdb6 \(1\)\n {2}02:00:00:00:01:02 dev vxtun0 dst 2001:db8::2 self permanent\n/);
  assert.match(text, /^ {2}route6\/no-match +3$/m);
  assert.match(text, /^ {2}inner-ipv6\/spoofed-source +1$/m);
  assert.match(text, /^ {2}ndp\/not-for-us +2$/m);
  assert.match(text, /^ {2}underlay6\/no-socket +1$/m);
  assert.not.match(formatStatus(agentStatus()), /routes6|lease6|ipv6/, 'an IPv4-only agent shows nothing of IPv6');
});

test('metrics: IPv6 table gauges, and IPv6 drops as vxtun_drops_total samples by stage and reason', () => {
  const text = formatMetrics(dualStatus());
  assert.match(text, /\nvxtun_routes6 2\n/);
  assert.match(text, /\nvxtun_neighbors6 2\n/);
  assert.match(text, /\nvxtun_fdb6 1\n/);
  assert.match(text, /\nvxtun_drops_total\{stage="route6",reason="no-match"\} 3\n/);
  assert.match(text, /\nvxtun_drops_total\{stage="inner-ipv6",reason="spoofed-source"\} 1\n/);
  assert.match(text, /\nvxtun_drops_total\{stage="ndp",reason="not-for-us"\} 2\n/);
  assert.not.match(formatMetrics(agentStatus()), /routes6/);
  assert.match(formatMetrics(agentStatus({ routes6: [], neighbors6: [], fdb6: [] })), /\nvxtun_routes6 0\n/, 'host-gw style status without counters');
});

test('node line: IPv6 forwarding beside ip_forward, and its warning when off', () => {
  const on = formatStatus(agentStatus({ node: { ipForward: true, ipv6Forward: true } }));
  assert.match(on, /^node     ip_forward on, ipv6 forwarding on$/m);
  const off = formatStatus(agentStatus({ node: { ipForward: true, ipv6Forward: false, warning: 'IPv6 forwarding is off' } }));
  assert.match(off, /^node     ip_forward on, ipv6 forwarding OFF: IPv6 forwarding is off$/m);
  assert.match(formatStatus(agentStatus({ node: { ipForward: true } })), /^node     ip_forward on$/m, 'IPv4-only: as before');
});

test.run();
