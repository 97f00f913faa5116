// `vxtun status`: this node's lease, network config, tables and counters, laid out as `ip route`, `ip neigh` and
// `bridge fdb` print theirs, or as JSON for programs.
import { readdirSync } from 'node:fs';
import type { Command } from 'commander';
import type { AgentStatus } from '../../control/agent';
import { formatBgpStatus } from '../../control/bgp/bgp-metrics';
import { STATUS_DIR, defaultStatusSocket, fetchStatus } from '../../control/status-server';
import { formatIPv4 } from '../../wire/address';
import { formatIPv6 } from '../../wire/address6';
import { LAB_STATE_DIR } from '../../lab/topology';
import { ipv4Address, ipv6Address, unixSocketPath } from '../parse';

/** The agent socket to talk to: by public IP (IPv4, or IPv6 for an IPv6-only agent), or the only one on this host. */
export function findSocket(publicIp?: number, publicIpv6?: bigint): string {
  if (publicIp !== undefined) return defaultStatusSocket(formatIPv4(publicIp));
  if (publicIpv6 !== undefined) return defaultStatusSocket(formatIPv6(publicIpv6));
  let sockets: string[] = [];
  try {
    sockets = readdirSync(STATUS_DIR).filter((name) => name.endsWith('.sock'));
  } catch {
    // no directory: no agent ever ran here
  }
  if (sockets.length === 1) return `${STATUS_DIR}/${sockets[0]}`;
  if (sockets.length === 0) {
    throw new Error(
      `no agent status socket in ${STATUS_DIR}: is "vxtun agent" running on this host? ` +
        `(a lab's agents answer on ${LAB_STATE_DIR}/<lab>/<node>.sock, e.g. --socket ${LAB_STATE_DIR}/vxt-lab/n1.sock; \`vxtun lab ls\` lists the labs)`,
    );
  }
  throw new Error(`several agents run on this host (${sockets.join(', ')}): choose one with --public-ip (--public-ipv6 for an IPv6-only agent) or --socket`);
}

function formatIpMasq(m: NonNullable<AgentStatus['ipMasq']>): string {
  if (!m.enabled && m.unsupported !== undefined) return `off (${m.unsupported})`;
  if (!m.enabled) return 'off (--no-ip-masq: FLANNEL_IPMASQ=false, the CNI bridge plugin masquerades, pod-to-pod included)';
  const where = m.tool !== undefined ? `${m.tool}, ${m.where}` : 'no firewall tool';
  const restored = m.restored > 0 ? `, restored ${m.restored} time${m.restored === 1 ? '' : 's'}` : '';
  return `on, ${where}: ${m.state.toUpperCase() === 'INSTALLED' ? 'installed' : m.state.toUpperCase()}${restored}${m.problem ? ` (${m.problem})` : ''}`;
}

/**
 * The IPv6 tables as `ip -6 route`, `ip -6 neigh` and `bridge fdb` print flannel-v6.<VNI>'s entries (one device here
 * for both families); nothing when the agent carries no IPv6. IPv6-over-IPv4 FDB entries are in the IPv4 fdb list.
 */
export function formatTables6(s: AgentStatus, dev: string): string[] {
  if (s.routes6 === undefined) return [];
  const lines = ['', `routes6 (${s.routes6.length})`];
  for (const r of s.routes6) {
    lines.push(r.encap === 'direct' ? `  ${r.subnet} via ${r.via} dev ${r.dev} (direct, kernel)` : `  ${r.subnet} via ${r.via} dev ${dev} onlink encap ${r.encap}`);
  }
  const neighbors = s.neighbors6 ?? [];
  lines.push('', `neighbors6 (${neighbors.length})`);
  for (const n of neighbors) lines.push(`  ${n.address} dev ${dev} lladdr ${n.mac} PERMANENT`);
  const fdb = s.fdb6 ?? [];
  lines.push('', `fdb6 (${fdb.length})`);
  for (const f of fdb) lines.push(`  ${f.mac} dev ${dev} dst ${f.dst} self permanent`);
  return lines;
}

export function formatStatus(s: AgentStatus): string {
  const lines: string[] = [];
  const dev = s.tun?.name ?? s.underlay.device;
  const backend = s.network.backend;
  const backendText =
    backend.type === 'vxlan'
      ? `vxlan vni ${backend.vni} port ${backend.port}${backend.directRouting ? ' direct-routing' : ''}`
      : backend.type === 'bgp' ? `bgp as ${backend.as} encap ${backend.encap}` : backend.type;
  const expires = s.lease.expiresAt === undefined ? 'never' : `in ${Math.max(0, Math.round((s.lease.expiresAt - Date.now()) / 1000))}s`;
  // IPv6-only (no IPv4 subnet, '-'): one lease line, the IPv6 one.
  const ipv6Only = s.lease.subnet === '-' && s.lease.subnet6 !== undefined;
  if (ipv6Only) {
    lines.push(`lease    ${s.lease.subnet6} (IPv6-only)${s.lease.nodeName ? ` node ${s.lease.nodeName}` : ''} public-ipv6 ${s.lease.publicIpv6 ?? '-'}${s.lease.vtepMac6 ? ` vtep-mac ${s.lease.vtepMac6}` : ''} expires ${expires}`);
  } else {
    lines.push(`lease    ${s.lease.subnet}${s.lease.nodeName ? ` node ${s.lease.nodeName}` : ''} public-ip ${s.lease.publicIp}${s.lease.vtepMac ? ` vtep-mac ${s.lease.vtepMac}` : ''} expires ${expires}`);
  }
  if (s.lease.subnet6 !== undefined && !ipv6Only) {
    lines.push(`lease6   ${s.lease.subnet6}${s.lease.publicIpv6 ? ` public-ipv6 ${s.lease.publicIpv6}` : ' (no public-ipv6: IPv6 over the IPv4 underlay)'}${s.lease.vtepMac6 ? ` vtep-mac ${s.lease.vtepMac6}` : ''}`);
  }
  const networks = ipv6Only
    ? `ipv6 ${s.network.ipv6Network} subnet-len ${s.network.ipv6SubnetLen} (IPv6-only)`
    : `${s.network.network} subnet-len ${s.network.subnetLen}${s.network.ipv6Network ? ` ipv6 ${s.network.ipv6Network} subnet-len ${s.network.ipv6SubnetLen}` : ''}`;
  lines.push(`network  ${networks} backend ${backendText}`);
  const io = s.tun?.io === undefined ? '' : `, ${s.tun.offload ? `offload on${s.tun.uso ? ' (TSO, USO)' : ' (TSO)'}` : 'offload off'}, io ${s.tun.io}${s.tun.busyPollUs ? `, busy-poll ${s.tun.busyPollUs} us` : ''}`;
  lines.push(s.tun ? `device   ${s.tun.name} mtu ${s.tun.mtu}${io}, kernel queue drops ${s.tun.kernelQueueDrops}, underlay ${s.underlay.device} ${s.underlay.subnet} mtu ${s.underlay.mtu}${s.underlay.df ? `, outer df ${s.underlay.df}` : ''}` : `underlay ${s.underlay.device} ${s.underlay.subnet} mtu ${s.underlay.mtu} (${backend.type}: the kernel forwards)`);
  if (s.underlay.addressPresent === false) lines.push(`underlay ADDRESS MISSING: ${s.underlay.problem ?? `${s.lease.publicIp} is on no interface`}`);
  if (s.node !== undefined) {
    const v6 = s.node.ipv6Forward === undefined ? '' : `, ipv6 forwarding ${s.node.ipv6Forward === null ? 'unknown' : s.node.ipv6Forward ? 'on' : 'OFF'}`;
    const off = s.node.warning !== undefined; // set when a forwarding switch the network needs is off (not ip_forward when IPv6-only)
    lines.push(`node     ip_forward ${s.node.ipForward === null ? 'unknown' : s.node.ipForward ? 'on' : 'OFF'}${v6}${off ? `: ${s.node.warning ?? ''}` : ''}`);
  }
  if (s.ipMasq !== undefined) lines.push(`ip-masq  ${formatIpMasq(s.ipMasq)}`);
  lines.push(`store    ${s.storeConnected ? 'connected' : 'DISCONNECTED (forwarding with the last known tables)'}`);
  if (s.bgp) lines.push(...formatBgpStatus(s.bgp));
  for (const t of s.traceClients ?? []) {
    lines.push(`trace    a client attached: ${t.sentJourneys} journeys sent, ${t.droppedJourneys} dropped (client too slow), ${t.queuedBytes} bytes queued`);
  }
  if (s.configMismatch) {
    lines.push(`CONFIG MISMATCH: the store's network config differs from the running one (restart the agent to use it): ${s.configMismatch.differences.join('; ')}`);
    lines.push(`  stored  ${s.configMismatch.stored}`);
  }
  const refused = s.refusedLeases ?? [];
  if (refused.length > 0) {
    lines.push('', `refused leases (${refused.length})`);
    for (const r of refused) lines.push(`  ${r.key}: ${r.reason}`);
  }
  // IPv6-only: the IPv4 tables are empty by construction; only the IPv6 ones are listed.
  if (!ipv6Only || s.routes.length > 0) lines.push('', `routes (${s.routes.length})`);
  for (const r of s.routes) {
    lines.push(r.encap === 'direct' ? `  ${r.subnet} via ${r.via} dev ${r.dev} (direct, kernel)` : `  ${r.subnet} via ${r.via} dev ${dev} onlink encap ${r.encap}`);
  }
  if (s.neighbors.length > 0 || (backend.type === 'vxlan' && !ipv6Only)) {
    lines.push('', `neighbors (${s.neighbors.length})`);
    for (const n of s.neighbors) lines.push(`  ${n.address} dev ${dev} lladdr ${n.mac} PERMANENT`);
    lines.push('', `fdb (${s.fdb.length})`);
    for (const f of s.fdb) lines.push(`  ${f.mac} dev ${dev} dst ${f.dst} self permanent`);
  }
  lines.push(...formatTables6(s, dev));
  if (s.counters === undefined || s.pool === undefined) return `${lines.join('\n')}\n`;
  const c = s.counters as {
    tunIn: { packets: number; bytes: number };
    underlayOut: { packets: number; bytes: number };
    underlayIn: { packets: number; bytes: number };
    tunOut: { packets: number; bytes: number };
    arpReplies: number;
    icmpErrors: number;
    gsoFallbacks?: number;
    gsoFallbackPeers?: number;
    drops: Record<string, number>;
  };
  lines.push('', 'traffic          packets        bytes');
  const row = (name: string, f: { packets: number; bytes: number }): string =>
    `  ${name.padEnd(14)} ${String(f.packets).padStart(8)} ${String(f.bytes).padStart(12)}`;
  lines.push(row('tun in', c.tunIn), row('underlay out', c.underlayOut), row('underlay in', c.underlayIn), row('tun out', c.tunOut));
  lines.push(`  arp replies ${c.arpReplies}, icmp errors sent ${c.icmpErrors}`);
  if (c.gsoFallbacks) lines.push(`  UDP GSO refused by the kernel ${c.gsoFallbacks} times; peers sending one by one until their retry: ${c.gsoFallbackPeers ?? 0}`);
  const drops = Object.entries(c.drops);
  lines.push('', `drops (${drops.reduce((sum, [, n]) => sum + n, 0)})`);
  for (const [reason, n] of drops.sort()) lines.push(`  ${reason.padEnd(30)} ${n}`);
  lines.push('', `pool     ${s.pool.inUse}/${s.pool.capacity} slots in use, lowest free ${s.pool.lowWater}`);
  return `${lines.join('\n')}\n`;
}

export function statusCommand(program: Command): void {
  program
    .command('status')
    .description("show this node's lease, network, route/neighbor/FDB tables and counters")
    .option('--public-ip <ip>', 'the agent to ask, by its public IP (when several run on this host)', ipv4Address)
    .option('--public-ipv6 <ip>', 'the IPv6-only agent to ask, by its public IPv6 address (when several run on this host)', ipv6Address)
    .option('--socket <path>', 'the agent status socket to ask', unixSocketPath)
    .option('--json', 'print JSON')
    .action(async (opts) => {
      const status = (await fetchStatus(opts.socket ?? findSocket(opts.publicIp, opts.publicIpv6))) as AgentStatus;
      process.stdout.write(opts.json ? `${JSON.stringify(status, null, 2)}\n` : formatStatus(status));
    });
}
