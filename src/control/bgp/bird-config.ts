// BIRD 2 configuration for one node of the bgp backend, rendered as a pure function of (our lease, the network config,
// the other leases). The shape is Calico's (confd templates bird.cfg.template, bird_aggr.cfg.template,
// bird_ipam.cfg.template) translated to bird2 syntax, with two deliberate differences:
//   - a route is imported only when its block is the block of a current bgp lease other than ours and its BGP next
//     hop is that lease's PublicIP (function vxtun_leased_block, rendered from the leases); Calico imports all, so any
//     peer could announce another node's block with a higher local pref and take its traffic;
//   - IP-in-IP has no `krt_tunnel` in upstream bird2 (and this kernel has no ipip module): the routes vxtun must
//     encapsulate go through a pipe into a second BIRD table, exported to kernel table `kernelTable`, which the agent
//     follows and feeds to its own IP-in-IP tables (FACTS.md, "BGP with BIRD").
// Same input, same bytes: protocol names and order depend only on addresses, so `birdc configure` after a lease event
// touches only the sessions that changed (BIRD keeps a protocol whose configuration is unchanged).
import { type Cidr, type IPv4, cidrContains, cidrEquals, formatCidr, formatIPv4 } from '../../wire/address';
import type { Lease } from '../lease';
import type { BgpBackendConfig, NetworkConfig } from '../network-config';

/** Kernel routing table the IP-in-IP routes go to (`ip route show table 201`); unused by encap none. */
export const DEFAULT_IPIP_KERNEL_TABLE = 201;
/** BFD as FACTS.md measured it: 100 ms x 5 noticed a cut link in 0.46 s. */
export const BFD_INTERVAL_MS = 100;
export const BFD_MULTIPLIER = 5;

export interface BirdConfigInput {
  /** Our lease: the block we announce; its PublicIP is the router id and session source. */
  lease: Lease;
  /** Must carry a bgp backend. */
  config: NetworkConfig;
  /** Every lease in the store (ours and other backends' are skipped); duplicates by PublicIP count once. */
  leases: readonly Lease[];
  /** The interface holding our PublicIP and its subnet: `protocol direct` on it resolves next hops; CrossSubnet's test. */
  underlay: { device: string; subnet: Cidr };
  /** Kernel table for IP-in-IP routes (default DEFAULT_IPIP_KERNEL_TABLE). */
  kernelTable?: number;
}

/** One BGP session in the rendered config, as `birdc show protocols` will name it. */
export interface BirdPeer {
  /** Protocol name: Mesh_<ip> (full mesh), RR_<ip> (a route reflector we are client of), Client_<ip> (we reflect). */
  name: string;
  address: IPv4;
  /** We wait for the peer to connect (`passive on`). */
  passive: boolean;
  /** We reflect this peer's routes (`rr client`). */
  rrClient: boolean;
}

/** Calico's protocol name style: Mesh_192_0_2_12. */
export function peerName(kind: 'Mesh' | 'RR' | 'Client', address: IPv4): string {
  return `${kind}_${formatIPv4(address).replace(/\./g, '_')}`;
}

/**
 * The sessions a node opens. Full mesh: one per other bgp lease (by PublicIP); of each pair, the node with the higher
 * address connects and the lower one is passive (Calico's template makes one side passive to avoid a graceful-restart
 * race; it compares the addresses as strings, we compare them as numbers). With route reflectors: a client peers with
 * the reflectors only and connects to them; a reflector serves every other bgp lease as `rr client` (passive) and
 * meshes with the other reflectors. Sorted by address.
 */
export function birdPeers(own: IPv4, backend: BgpBackendConfig, leases: readonly Lease[]): BirdPeer[] {
  const nodes = new Set<IPv4>();
  for (const lease of leases) if (lease.attrs.backendType === 'bgp' && lease.attrs.publicIp !== own) nodes.add(lease.attrs.publicIp);
  const reflectors = new Set(backend.routeReflectors);
  const peers: BirdPeer[] = [];
  if (reflectors.size === 0) {
    for (const address of nodes) peers.push({ name: peerName('Mesh', address), address, passive: address > own, rrClient: false });
  } else if (reflectors.has(own)) {
    for (const address of reflectors) {
      if (address !== own) peers.push({ name: peerName('Mesh', address), address, passive: address > own, rrClient: false });
    }
    for (const address of nodes) {
      if (!reflectors.has(address)) peers.push({ name: peerName('Client', address), address, passive: true, rrClient: true });
    }
  } else {
    for (const address of reflectors) peers.push({ name: peerName('RR', address), address, passive: false, rrClient: false });
  }
  return peers.sort((a, b) => a.address - b.address);
}

/**
 * The routes a node may import: for each bgp lease other than ours (by block and by PublicIP) whose block is a
 * lease-length block of the network, that block and the node it belongs to. Sorted by block, then address; exact
 * duplicates count once.
 */
export function leasedBlocks(own: Lease, config: NetworkConfig, leases: readonly Lease[]): Array<{ subnet: Cidr; publicIp: IPv4 }> {
  const seen = new Set<string>();
  const out: Array<{ subnet: Cidr; publicIp: IPv4 }> = [];
  for (const l of leases) {
    if (l.attrs.backendType !== 'bgp' || l.attrs.publicIp === own.attrs.publicIp || cidrEquals(l.subnet, own.subnet)) continue;
    if (l.subnet.prefixLength !== config.subnetLen || !cidrContains(config.network, l.subnet.address)) continue;
    const key = `${formatCidr(l.subnet)} ${l.attrs.publicIp}`;
    if (seen.has(key)) continue;
    seen.add(key);
    out.push({ subnet: l.subnet, publicIp: l.attrs.publicIp });
  }
  return out.sort((a, b) => a.subnet.address - b.subnet.address || a.publicIp - b.publicIp);
}

/** The bird.conf text. Throws when the config is not bgp or our lease is outside the network. */
export function renderBirdConfig(input: BirdConfigInput): string {
  const backend = input.config.backend;
  if (backend.type !== 'bgp') throw new Error(`renderBirdConfig needs a bgp backend, got ${backend.type}`);
  const { lease, config, underlay } = input;
  const block = formatCidr(lease.subnet);
  const network = formatCidr(config.network);
  if (!cidrContains(config.network, lease.subnet.address) || lease.subnet.prefixLength !== config.subnetLen) {
    throw new Error(`our lease ${block} is not a /${config.subnetLen} block of the network ${network}`);
  }
  if (cidrEquals(underlay.subnet, lease.subnet)) throw new Error(`the underlay subnet ${formatCidr(underlay.subnet)} is our pod block`);
  const table = input.kernelTable ?? DEFAULT_IPIP_KERNEL_TABLE;
  const self = formatIPv4(lease.attrs.publicIp);
  const as = backend.as;
  const encap = backend.encap;
  const onOurSubnet = `bgp_next_hop ~ ${formatCidr(underlay.subnet)}`;
  const out: string[] = [];
  const add = (...lines: string[]): void => void out.push(...lines);

  add(
    '# Generated by vxtun from the store (our lease, the network config, the other leases): do not edit.',
    `# Backend bgp: AS ${as}, encap ${encap}, ${backend.routeReflectors.length === 0 ? 'full mesh' : `route reflectors ${backend.routeReflectors.map(formatIPv4).join(' ')}`}.`,
    `router id ${self};`,
    'log stderr { info, remote, warning, error, auth, fatal, bug };',
    // Millisecond "since" in `show protocols`: vxtun status shows it, and tests compare it across reconfigurations.
    'timeformat protocol iso long ms;',
    '',
    '# Our lease, announced as one blackhole route: the kernel shows `blackhole <block> proto bird` (Calico bird_aggr).',
    `protocol static vxtun_block { ipv4; route ${block} blackhole; }`,
    '',
    '# Export our block alone, nothing beneath it (Calico bird_aggr.cfg.template).',
    'filter vxtun_export {',
    `  if net = ${block} then accept;`,
    `  if net ~ ${block} then reject;`,
    '  reject;',
    '}',
    '',
    "# Import a route only when its block is a current bgp lease's (not ours) and its BGP next hop is that lease's",
    '# PublicIP: a peer cannot announce another node\'s block, whatever its local pref. Route reflectors pass the',
    "# originator's next hop unchanged (iBGP), so the same test holds behind them. Re-rendered on every lease event.",
    'function vxtun_leased_block() {',
    ...leasedBlocks(input.lease, config, input.leases).map(
      ({ subnet, publicIp }) => `  if net = ${formatCidr(subnet)} && bgp_next_hop = ${formatIPv4(publicIp)} then return true;`,
    ),
    '  return false;',
    '}',
    'filter vxtun_import {',
    `  if net = ${block} then reject;`,
    '  if vxtun_leased_block() then accept;',
    '  reject;',
    '}',
    '',
    '# Which routes the main kernel table gets: our blackhole, and peers reached without encapsulation.',
    'filter vxtun_main_table {',
    '  if source = RTS_STATIC then accept;',
  );
  if (encap === 'none') add('  if source = RTS_BGP then accept;');
  if (encap === 'ipip-crosssubnet') add(`  if source = RTS_BGP && ${onOurSubnet} then accept;`);
  add(
    '  reject;',
    '}',
    '',
    'protocol device { scan time 2; }',
    `# Next hops on the underlay resolve through it (without it BIRD installs unreachable routes for the peers' blocks).`,
    `protocol direct { ipv4; interface "${underlay.device}"; }`,
    '',
    '# Calico: learn the kernel routes (off-subnet next hops resolve through them), keep ours in the kernel while BIRD',
    '# restarts (persist; the agent deletes them when it stops), scan every 2 s.',
    'protocol kernel vxtun_kernel {',
    '  ipv4 { import all; export filter vxtun_main_table; };',
    '  learn; persist; scan time 2; graceful restart; merge paths on;',
    '}',
  );
  if (encap !== 'none') {
    add(
      '',
      `# IP-in-IP: the routes vxtun encapsulates, piped into their own table and kernel table ${table}, which the agent`,
      '# follows into its IP-in-IP tables (bird2 has no krt_tunnel).',
      'ipv4 table vxtun_ipip;',
      'protocol pipe vxtun_ipip_pipe {',
      '  table master4; peer table vxtun_ipip;',
      '  import none;',
      `  export filter { if source = RTS_BGP${encap === 'ipip-crosssubnet' ? ` && !(${onOurSubnet})` : ''} then accept; reject; };`,
      '}',
      'protocol kernel vxtun_ipip_kernel {',
      '  ipv4 { table vxtun_ipip; import none; export all; };',
      `  kernel table ${table};`,
      '  persist; scan time 2; graceful restart; merge paths on;',
      '}',
    );
  }
  if (backend.bfd) {
    add(
      '',
      `# BFD: a dead peer noticed in about ${BFD_INTERVAL_MS} ms x ${BFD_MULTIPLIER}, not at hold-timer expiry (calico#4607).`,
      'protocol bfd vxtun_bfd {',
      `  interface "${underlay.device}" { interval ${BFD_INTERVAL_MS} ms; multiplier ${BFD_MULTIPLIER}; };`,
      `  multihop { interval ${BFD_INTERVAL_MS} ms; multiplier ${BFD_MULTIPLIER}; };`,
      '}',
    );
  }
  add(
    '',
    "# Calico's bgp_template: multihop, recursive gateways, add paths, its timers; graceful restart as configured.",
    'template bgp vxtun_peer {',
    `  local ${self} as ${as};`,
    '  multihop;',
    '  ipv4 { gateway recursive; import filter vxtun_import; export filter vxtun_export; add paths on; };',
    backend.gracefulRestart > 0 ? `  graceful restart on; graceful restart time ${backend.gracefulRestart};` : '  graceful restart off;',
    '  connect delay time 2; connect retry time 5; error wait time 5,30;',
    ...(backend.bfd ? ['  bfd on;'] : []),
    '}',
    '',
  );
  const peers = birdPeers(lease.attrs.publicIp, backend, input.leases);
  if (peers.length === 0) add('# No peers yet: the other nodes appear here as their leases do.');
  for (const peer of peers) {
    const extra = [peer.rrClient ? ' rr client;' : '', peer.passive ? ' passive on;' : ''].join('');
    add(`protocol bgp ${peer.name} from vxtun_peer { neighbor ${formatIPv4(peer.address)} as ${as};${extra} }`);
  }
  return `${out.join('\n')}\n`;
}
