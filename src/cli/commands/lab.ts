// `vxtun lab up|down|exec|ls`: a vxtun overlay across network namespaces on this machine, to try things by hand.
// `lab up` leaves its agents running (detached, logs in /run/vxtun/labs/<name>/) and exits; `lab down` removes
// everything the lab made, also after a crash, from the lab's state file and record.
import { spawn } from 'node:child_process';
import { accessSync, constants as fsConstants, statSync, writeFileSync } from 'node:fs';
import { constants } from 'node:os';
import { join } from 'node:path';
import type { Command } from 'commander';
import {
  DEFAULT_IPV6_NETWORK, Overlay, type LabRecord, type LabRecordNode, type OverlayIPv6Options, agentIdentity, isRecordedAgentAlive,
  parseFlannelLease, readLabRecord, stopRecordedAgents, writeLabRecord,
} from '../../lab/overlay';
import { type Pod, attachPod, detachPod, podStateDir } from '../../lab/pods';
import {
  type Lab, checkLabName, createLab, destroyLab, hubNamespace, isLabOwnerAlive, labNamespacePattern, labWorkDir, listLabStates,
  listNamespaces, readLabState,
} from '../../lab/topology';
import { IpMasq, runCommand } from '../../control/ip-masq';
import { DEFAULT_PREFIX, parseSubnetKey, subnetsPrefix } from '../../control/lease';
import { writeSubnetEnv } from '../../control/subnet-env';
import { type Cidr, formatCidr, formatIPv4, parseCidr } from '../../wire/address';
import { type Cidr6, formatCidr6, formatIPv6, parseCidr6 } from '../../wire/address6';
import { DEFAULT_UNDERLAY6 } from '../../lab/topology';
import { BGP_ENCAPS, type BgpEncap } from '../../control/network-config';
import { integerIn, oneOf } from '../parse';

export const DEFAULT_LAB_NAME = 'vxt-lab';
const TUN_DEVICE = 'vxtun0'; // the agent's default
const KERNEL_SUBNET_START = '10.17.250.0/24'; // far from where leases usually land; moved up when taken

export interface OverlayLabOptions {
  name: string;
  nodes: number;
  backend: 'vxlan' | 'ipip' | 'host-gw' | 'bgp';
  /** bgp: Calico's encapsulation choice (default none: kernel routes via each node, like Calico's BGP mode). */
  bgpEncap?: BgpEncap;
  /** Pods per node, attached with the real CNI plugins as flannel's CNI plugin would (default 1; 0 for none). */
  pods?: number;
  /** Extra `vxtun agent` arguments for every agent (e.g. ['--no-ip-masq']). */
  agentArgs?: string[];
  /** The last node runs the kernel's VXLAN device as flannel programs it (the overlay then uses port 8472). */
  kernelPeer?: boolean;
  /** 'etcd': a real etcd on the lab's underlay, in the hub namespace (192.0.2.2:2379); default an embedded store. */
  store?: 'file' | 'etcd';
  /**
   * Dual-stack (`--ipv6`), IPv6-only (`--ipv6-only`) and/or VXLAN over the IPv6 underlay (`--ipv6-underlay`): the lab
   * gets a 2001:db8:1::/64 underlay beside 192.0.2.0/24, pods get IPv6 addresses from the CNI plugins (issue 12).
   */
  ipv6?: OverlayIPv6Options;
  storeUrl?: string;
  /** Outlives this process: agents detached, no exit hooks (`lab up`). */
  persistent: boolean;
  /** Progress lines for people. */
  say?: (line: string) => void;
}

export interface OverlayLab {
  lab: Lab;
  overlay: Overlay;
  record: LabRecord;
  /** From the first agent's start until every agent routes to every other node. */
  readySeconds: number;
  /** Every pod, node by node. */
  pods: Pod[];
}

export function requireRoot(what: string): void {
  if (process.getuid?.() !== 0) {
    throw new Error(`${what} needs root (network namespaces, TUN devices, raw sockets): run it with sudo`);
  }
}

/** Throws what would make buildOverlayLab refuse, before anything is made or printed. */
export function checkOverlayLabOptions(options: Pick<OverlayLabOptions, 'name' | 'nodes' | 'backend' | 'kernelPeer' | 'ipv6'>): void {
  checkLabName(options.name);
  if (options.ipv6 !== undefined && options.backend !== 'vxlan') {
    throw new Error(`--ipv6, --ipv6-only and --ipv6-underlay need --backend vxlan: vxtun carries IPv6 pods over VXLAN only (not ${options.backend})`);
  }
  if (options.ipv6?.only && options.kernelPeer) {
    throw new Error('--kernel-peer with --ipv6-only is not built by the lab: its kernel node is dual-stack (use --ipv6 --ipv6-underlay)');
  }
  if (options.ipv6 !== undefined && !options.ipv6.only && !options.ipv6.underlay && options.kernelPeer) {
    // flannel's flannel-v6 device listens on the node's IPv6 address: IPv6 pods reach it only over an IPv6 underlay.
    throw new Error('--kernel-peer with --ipv6 needs --ipv6-underlay: the kernel node\'s flannel-v6 device takes IPv6 pods only over the IPv6 underlay (flannel has no IPv6-over-IPv4)');
  }
  if (options.kernelPeer && options.backend !== 'vxlan') {
    // The kernel node is what kernel-vxlan.ts programs: flannel's vxlan backend (a flannel.<VNI> device, port 8472).
    const why = options.backend === 'ipip'
      ? 'the kernel node is programmed as flannel\'s vxlan backend does; an IP-in-IP kernel peer is not built by the lab (and this kernel has no ipip module)'
      : `the kernel node is a VXLAN device programmed as flannel's vxlan backend does, and a ${options.backend} lab has no tunnel for it to talk to (its routes are plain kernel routes${options.backend === 'bgp' ? ' from BGP' : ''})`;
    throw new Error(`--kernel-peer needs --backend vxlan: ${why}`);
  }
  if (options.kernelPeer && options.nodes < 2) throw new Error('--kernel-peer needs at least 2 nodes (one vxtun node and the kernel one)');
}

/** Builds the namespaces, starts the agents (and the kernel node), waits for a full mesh, attaches the pods. */
export async function buildOverlayLab(options: OverlayLabOptions): Promise<OverlayLab> {
  const say = options.say ?? (() => undefined);
  checkOverlayLabOptions(options);
  const lab = await createLab({ name: options.name, nodes: options.nodes, persistent: options.persistent, underlay6: options.ipv6 !== undefined });
  let overlay: Overlay | undefined;
  try {
    overlay = await Overlay.create(lab, {
      backend: options.backend,
      ...(options.ipv6 !== undefined ? { ipv6: options.ipv6 } : {}),
      ...(options.backend === 'bgp' ? { bgp: { encap: options.bgpEncap } } : {}),
      port: options.kernelPeer ? 8472 : undefined,
      store: options.store,
      storeUrl: options.storeUrl,
      persistent: options.persistent,
    });
    const kernelNode = options.kernelPeer ? lab.nodes[lab.nodes.length - 1] : undefined;
    const agentNodes = lab.nodes.filter((node) => node !== kernelNode);
    const started = Date.now();
    say(`starting ${agentNodes.length} vxtun agent${agentNodes.length === 1 ? '' : 's'}...`);
    const handles = await Promise.all(agentNodes.map((node) => overlay!.startAgent(node, [...(options.agentArgs ?? [])])));
    const v6 = options.ipv6;
    const subnets = new Map<string, Cidr | undefined>();
    const subnets6 = new Map<string, Cidr6 | undefined>();
    for (const node of agentNodes) {
      subnets.set(node.name, v6?.only ? undefined : await overlay.subnetOf(node));
      if (v6 !== undefined) subnets6.set(node.name, await overlay.subnet6Of(node));
    }
    if (kernelNode !== undefined) {
      const subnet = await freeKernelSubnet(overlay);
      if (v6 !== undefined) {
        const subnet6 = await freeKernelSubnet6(overlay);
        say(`programming the kernel's VXLAN devices in ${kernelNode.name} as a dual-stack flanneld would (${subnet}, ${formatCidr6(subnet6)})...`);
        await overlay.addKernelNode6(kernelNode, subnet, formatCidr6(subnet6));
        subnets6.set(kernelNode.name, subnet6);
      } else {
        say(`programming the kernel's VXLAN device in ${kernelNode.name} as flanneld would (${subnet})...`);
        await overlay.addKernelNode(kernelNode, subnet);
      }
      subnets.set(kernelNode.name, parseCidr(subnet));
      await prepareKernelNodeForPods(overlay, kernelNode, parseCidr(subnet), subnets6.get(kernelNode.name));
    }
    if (v6 === undefined) {
      await Promise.all(agentNodes.map((node) => overlay!.waitForRoutes(node, lab.nodes.length - 1, 15_000)));
    } else {
      await Promise.all(agentNodes.map((node) => overlay!.waitForSubnets(
        node,
        lab.nodes.filter((other) => other !== node).map((other) => ({ subnet: subnets.get(other.name), subnet6: subnets6.get(other.name) })),
      )));
    }
    const readySeconds = (Date.now() - started) / 1000;
    const podCount = options.pods ?? 1;
    if (podCount > 0) say(`attaching ${podCount} pod${podCount === 1 ? '' : 's'} per node with the CNI bridge and host-local plugins, configured from subnet.env as flannel's CNI plugin does...`);
    const pods: Pod[] = [];
    const recordNodes: LabRecordNode[] = [];
    for (const node of lab.nodes) {
      const subnet = subnets.get(node.name);
      const subnet6 = subnets6.get(node.name);
      const nodePods: Pod[] = [];
      for (let j = 1; j <= podCount; j++) {
        nodePods.push(await attachPod(lab, node, j, { subnetEnvFile: overlay.subnetFile(node), stateDir: podStateDir(overlay.workDir, node.name) }));
      }
      pods.push(...nodePods);
      const handle = handles.find((h) => h.node === node);
      recordNodes.push({
        name: node.name,
        netns: node.netns,
        underlayIp: node.underlayIp,
        kind: handle ? 'vxtun' : 'kernel',
        subnet: subnet === undefined ? '-' : formatCidr(subnet),
        tunAddress: subnet === undefined ? '-' : formatIPv4(subnet.address),
        pod: nodePods[0]?.address ?? '',
        ...(node.underlayIp6 !== undefined ? { underlayIp6: node.underlayIp6 } : {}),
        ...(subnet6 !== undefined ? { subnet6: formatCidr6(subnet6), tunAddress6: formatIPv6(subnet6.address) } : {}),
        pods: nodePods,
        ...(handle ? { ...agentIdentity(handle), logFile: handle.logFile, statusSocket: handle.statusSocket } : {}),
      });
    }
    const record: LabRecord = {
      name: lab.name,
      backend: options.backend,
      ...(options.backend === 'bgp' ? { bgpEncap: options.bgpEncap ?? 'none' } : {}),
      network: overlay.network,
      vni: overlay.vni,
      port: overlay.port,
      storeUrl: overlay.storeUrl,
      ...((options.agentArgs ?? []).includes('--no-ip-masq') ? { ipMasq: false } : {}),
      ...(v6 !== undefined ? { ipv6: { network: overlay.network6!, only: v6.only ?? false, underlay: v6.underlay ?? false } } : {}),
      createdAt: new Date().toISOString(),
      nodes: recordNodes,
    };
    if (options.persistent) writeLabRecord(record);
    return { lab, overlay, record, readySeconds, pods };
  } catch (error) {
    say(`failed: ${(error as Error).message}; removing lab ${lab.name}`);
    if (overlay) {
      for (const node of lab.nodes) {
        const log = overlay.log(node).trim();
        if (log) say(`--- agent log of ${node.name} ---\n${log}`);
      }
      await overlay.close().catch(() => undefined);
    }
    await lab.destroy();
    if (options.persistent) await destroyLab(lab.name);
    throw error;
  }
}

/**
 * A kernel VXLAN node has no vxtun agent: write its subnet.env and install the masquerade rules as flanneld
 * --ip-masq would there, so that its pods behave like every other node's.
 */
async function prepareKernelNodeForPods(overlay: Overlay, node: Lab['nodes'][number], subnet: Cidr, subnet6?: Cidr6): Promise<void> {
  const network = parseCidr(overlay.network);
  await writeSubnetEnv(overlay.subnetFile(node), { network, subnet, mtu: 1450, ipMasq: true });
  if (subnet6 !== undefined) {
    // flanneld's IPv6 lines (first usable address, as for IPv4); the pods' MTU is the smaller device's: flannel-v6's.
    writeFileSync(overlay.subnetFile(node), [
      `FLANNEL_NETWORK=${formatCidr(network)}`, `FLANNEL_SUBNET=${formatIPv4(subnet.address + 1)}/${subnet.prefixLength}`,
      `FLANNEL_IPV6_NETWORK=${overlay.network6}`, `FLANNEL_IPV6_SUBNET=${formatIPv6(subnet6.address + 1n)}/${subnet6.prefixLength}`,
      `FLANNEL_MTU=${overlay.lab.mtu - 70}`, 'FLANNEL_IPMASQ=true', '',
    ].join('\n'));
  }
  await IpMasq.start({
    networks: { network, subnet },
    ...(subnet6 !== undefined ? { networks6: { network: parseCidr6(overlay.network6!), subnet: subnet6 } } : {}),
    log: { debug: () => undefined, info: () => undefined, warn: () => undefined, error: () => undefined },
    run: (file, args, input) => runCommand('ip', ['netns', 'exec', node.netns, file, ...args], input),
    resyncMs: 0, // nobody to keep them: the rules go with the node's namespace
  });
}

/**
 * CNI DEL for every recorded pod of a lab (`lab down`), as kubelet tears pods down; returns how many were detached.
 * Failures are collected, not thrown: the namespaces go anyway.
 */
export async function detachRecordedPods(record: LabRecord, workDir: string, say: (line: string) => void = () => undefined): Promise<number> {
  let detached = 0;
  for (const node of record.nodes) {
    for (const pod of node.pods ?? []) {
      try {
        await detachPod(pod, podStateDir(workDir, node.name));
        detached++;
      } catch (error) {
        say(`CNI DEL of pod ${pod.name} failed (its namespace is removed anyway): ${(error as Error).message}`);
      }
    }
  }
  return detached;
}

async function freeKernelSubnet(overlay: Overlay): Promise<string> {
  const taken = await overlay.withStore(async (store) =>
    new Set((await store.list(subnetsPrefix(DEFAULT_PREFIX))).kvs.map((kv) => parseSubnetKey(kv.key)).filter((c) => c !== undefined).map((c) => formatCidr(c))));
  const start = parseCidr(KERNEL_SUBNET_START);
  for (let i = 0; i < 5; i++) {
    const candidate = formatCidr({ address: start.address + i * 256, prefixLength: 24 });
    if (!taken.has(candidate)) return candidate;
  }
  throw new Error('no free subnet for the kernel node');
}

/** An IPv6 subnet for the kernel node no lease holds: <network> + 0xfa, 0xfb... at the network's subnet length (/64). */
async function freeKernelSubnet6(overlay: Overlay): Promise<Cidr6> {
  const network = parseCidr6(overlay.network6 ?? DEFAULT_IPV6_NETWORK);
  const length = overlay.options.ipv6?.subnetLen ?? 64;
  const taken = await overlay.withStore(async (store) => new Set((await store.list(subnetsPrefix(DEFAULT_PREFIX))).kvs
    .map((kv) => parseFlannelLease(kv.key, '{}')?.subnet6).filter((c) => c !== undefined).map((c) => formatCidr6(c))));
  for (let i = 0xfan; i < 0x100n; i++) {
    const candidate = { address: network.address + (i << BigInt(128 - length)), prefixLength: length };
    if (!taken.has(formatCidr6(candidate))) return candidate;
  }
  throw new Error('no free IPv6 subnet for the kernel node');
}

/** The node table, as `lab up`, `lab ls` and the demo print it. */
export function formatNodeTable(record: LabRecord): string {
  const header = ['node', 'namespace', 'underlay IP', 'subnet', record.backend === 'host-gw' ? 'overlay device' : 'TUN/VTEP address', 'pods (name address)', 'runs'];
  const rows = record.nodes.map((n) => [
    n.name, n.netns, n.underlayIp, n.subnet,
    record.backend === 'host-gw' ? 'none (host-gw)'
      : record.backend === 'bgp' && (record.bgpEncap ?? 'none') === 'none' ? 'none (BIRD routes)'
        : `${record.ipv6?.only && n.tunAddress6 !== undefined ? n.tunAddress6 : n.tunAddress} (${n.kind === 'vxtun' ? TUN_DEVICE : `flannel.${record.vni}`})`,
    (n.pods ?? []).map((p) => `${p.name} ${p.address}${p.address6 !== undefined && p.address6 !== p.address ? ` ${p.address6}` : ''}`).join(', ') || n.pod || '-',
    n.kind !== 'vxtun' ? 'kernel VXLAN'
      : n.pid === undefined ? 'vxtun agent'
        : isRecordedAgentAlive(n) ? `vxtun agent pid ${n.pid}` : `vxtun agent EXITED (was pid ${n.pid})`,
  ]);
  if (record.ipv6 !== undefined) {
    // IPv6 labs: the IPv6 underlay address and subnet beside the IPv4 ones.
    header.splice(3, 0, 'underlay IPv6', 'IPv6 subnet');
    rows.forEach((row, i) => row.splice(3, 0, record.nodes[i]!.underlayIp6 ?? '-', record.nodes[i]!.subnet6 ?? '-'));
  }
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]): string => `  ${cells.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd()}`;
  return [line(header), ...rows.map(line)].join('\n');
}

/** For `lab ls`: which agents have exited, where their logs are, and how to get them back. */
export function exitedAgentsNote(record: LabRecord): string | undefined {
  const exited = record.nodes.filter((n) => n.kind === 'vxtun' && n.pid !== undefined && !isRecordedAgentAlive(n));
  if (exited.length === 0) return undefined;
  const flag = nameFlag(record.name);
  const logs = exited.map((n) => `${n.name}${n.logFile ? ` (log ${n.logFile})` : ''}`).join(', ');
  // The lab cannot restart one node's agent: its pods, routes and lease are rebuilt with the whole lab.
  return `  agent${exited.length === 1 ? '' : 's'} exited: ${logs}. The lab cannot restart one node's agent: ` +
    `\`vxtun lab down${flag}\`, then \`vxtun lab up${flag}\` with the options it was built with (${describeOptions(record)})`;
}

function describeOverlay(record: LabRecord): string {
  const encap =
    record.backend === 'vxlan' ? `VXLAN VNI ${record.vni} UDP port ${record.port}`
      : record.backend === 'ipip' ? 'IP-in-IP'
        : record.backend === 'bgp' ? `BGP (a bird2 per node, full mesh), encap ${record.bgpEncap ?? 'none'}` : 'host-gw (kernel routes, no tunnel)';
  const v6 = record.ipv6 === undefined ? ''
    : `${record.ipv6.only ? ' (IPv6 only)' : ''}, IPv6 network ${record.ipv6.network}${record.ipv6.underlay ? ' over the IPv6 underlay' : ''}`;
  return `${record.nodes.length} nodes, ${encap}, network ${record.ipv6?.only ? '-' : record.network}${v6}`;
}

/** The `lab up` options a record was built with, as far as the record tells. */
function describeOptions(record: LabRecord): string {
  const options = [`--nodes ${record.nodes.length}`];
  if (record.backend !== 'vxlan') options.push(`--backend ${record.backend}`);
  if (record.backend === 'bgp' && (record.bgpEncap ?? 'none') !== 'none') options.push(`--encap ${record.bgpEncap}`);
  const pods = record.nodes[0]?.pods?.length ?? 0;
  if (pods !== 1) options.push(`--pods ${pods}`);
  if (record.ipMasq === false) options.push('--no-ip-masq');
  if (record.nodes.some((n) => n.kind === 'kernel')) options.push('--kernel-peer');
  if (record.storeUrl.startsWith('etcd://')) options.push('--store etcd');
  if (record.ipv6 !== undefined) {
    options.push(record.ipv6.only ? '--ipv6-only' : '--ipv6');
    if (record.ipv6.underlay) options.push('--ipv6-underlay');
    if (record.ipv6.network !== DEFAULT_IPV6_NETWORK) options.push(`--ipv6-network ${record.ipv6.network}`);
  }
  return options.join(' ');
}

/** The address MASQUERADE gives a pod's packet to another node: the outgoing device's (TUN or underlay), when known. */
function natSource(record: LabRecord, node: LabRecordNode): string {
  if (record.backend === 'vxlan' || record.backend === 'ipip') return ` ${node.tunAddress}`;
  if (record.backend === 'host-gw' || (record.bgpEncap ?? 'none') === 'none') return ` ${node.underlayIp}`;
  return '';
}

/** How a packet from one node's pod reaches another's, for the hints. */
function pathOf(record: LabRecord): string {
  switch (record.backend) {
    case 'vxlan': return 'through the overlay (VXLAN)';
    case 'ipip': return 'through the overlay (IP-in-IP)';
    case 'host-gw': return "routed by the kernel via the other node's underlay address (host-gw: no tunnel)";
    case 'bgp': {
      const encap = record.bgpEncap ?? 'none';
      return encap === 'none' ? 'routed by the kernel along the BGP routes BIRD learned (no tunnel)'
        : encap === 'ipip' ? 'along the BGP routes BIRD learned, in IP-in-IP'
          : 'along the BGP routes BIRD learned (one underlay subnet: ipip-crosssubnet does not encapsulate)';
    }
  }
}

function nameFlag(name: string): string {
  return name === DEFAULT_LAB_NAME ? '' : ` --name ${name}`;
}

export function usageHints(record: LabRecord): string {
  const flag = nameFlag(record.name);
  const [a, b] = record.nodes;
  const lines = ['', 'Try it:'];
  const podA = a?.pods?.[0];
  const podB = b?.pods?.[0];
  if (podA && podB) {
    lines.push(`  vxtun lab exec${flag} ${podA.name} -- ping -c 3 ${podB.address}      # pod ${podA.name} -> pod ${podB.name}, ${pathOf(record)}`);
    if (podB.address6 !== undefined && podB.address6 !== podB.address) {
      lines.push(`  vxtun lab exec${flag} ${podA.name} -- ping -c 3 ${podB.address6}      # the same over IPv6${record.ipv6?.underlay ? ', VXLAN over the IPv6 underlay' : ''}`);
    }
    lines.push(`  vxtun lab exec${flag} ${podB.name} -- iperf3 -s -1 -D && vxtun lab exec${flag} ${podA.name} -- iperf3 -c ${podB.address} -t 3`);
    const v6only = record.ipv6?.only === true;
    lines.push(`  vxtun lab exec${flag} ${podB.name} -- tcpdump -ni eth0 ${v6only ? 'icmp6' : 'icmp'}   # ${
      record.ipMasq === false
        ? `NATed: ${a!.name}'s own address${natSource(record, a!)} arrives, not ${podA.name}'s (--no-ip-masq: the CNI bridge plugin masquerades pod-to-pod traffic)`
        : "the sender's own pod address arrives: no NAT between pods"}`);
  } else if (a && b) {
    const target = b.pod || (record.backend === 'host-gw' ? b.underlayIp : b.tunAddress);
    lines.push(`  vxtun lab exec${flag} ${a.name} -- ping -c 3 ${target}      # ${a.name} -> ${b.name} (no pods: --pods N attaches some)`);
  }
  const agent = record.nodes.find((n) => n.kind === 'vxtun' && n.statusSocket);
  if (agent) {
    lines.push(`  vxtun status --socket ${agent.statusSocket}   # ${agent.name}'s routes, neighbors, FDB, counters`);
    const filter = record.backend === 'vxlan' ? `udp port ${record.port}` : record.backend === 'ipip' ? 'ip proto 4' : record.backend === 'bgp' ? "'tcp port 179 or ip proto 4'" : 'net 10.0.0.0/8';
    lines.push(`  vxtun lab exec${flag} ${agent.name} -- tcpdump -ni eth0 ${filter}`);
    if (record.backend === 'bgp' && agent.statusSocket) {
      lines.push(`  birdc -s ${agent.statusSocket.replace(/[^/]+$/, `${agent.name}-bird/bird.ctl`)} show protocols   # ${agent.name}'s BGP sessions`);
    }
    if (agent.logFile) lines.push(`  agent logs: ${agent.logFile.replace(/[^/]+$/, '')}n<i>.log`);
  }
  if (record.storeUrl.startsWith('etcd://')) {
    const endpoint = record.storeUrl.slice('etcd://'.length);
    lines.push(`  ip netns exec ${hubNamespace(record.name)} etcdctl --endpoints=${endpoint} get --prefix /coreos.com   # the store, from the control node`);
  }
  lines.push(`  vxtun lab down${flag}                         # remove everything`);
  return lines.join('\n');
}

/**
 * Why `command` cannot run, as a shell would see it (a node's namespace shares our file system and PATH), or undefined.
 */
function commandProblem(command: string): { message: string; code: number } | undefined {
  const executable = (path: string): boolean | undefined => {
    try {
      if (!statSync(path).isFile()) return false;
    } catch {
      return undefined; // not there
    }
    try {
      accessSync(path, fsConstants.X_OK);
      return true;
    } catch {
      return false;
    }
  };
  const candidates = command.includes('/') ? [command] : (process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin').split(':').map((dir) => join(dir || '.', command));
  const found = candidates.map(executable);
  if (found.includes(true)) return undefined;
  if (found.includes(false)) return { message: 'not an executable file', code: 126 };
  return { message: command.includes('/') ? 'no such file' : 'command not found', code: 127 };
}

function storeOption(value: string): { store: 'etcd' } | { storeUrl: string } {
  if (value === 'etcd') return { store: 'etcd' };
  if (/^etcd:/i.test(value)) {
    throw new Error(
      `--store ${value}: the lab's nodes live in their own namespaces and cannot reach an etcd outside them; ` +
        'use --store etcd (the lab runs its own etcd on its underlay, at 192.0.2.2:2379)',
    );
  }
  if (!/^file:/.test(value)) throw new Error(`--store must be "etcd" or a file: URL (the agents are separate processes), got "${value}"`);
  return { storeUrl: value };
}

export function labCommand(program: Command): void {
  // `lab exec NODE -- CMD -x` must hand -x to CMD: options are positional from here down.
  program.enablePositionalOptions();
  const lab = program.command('lab').description('an overlay of vxtun agents in network namespaces on this machine').enablePositionalOptions();

  lab
    .command('up')
    .description('build a lab: N namespaces on a bridge, one vxtun agent each (left running), pods attached by the CNI plugins')
    .option('--name <name>', 'lab name, prefix of its namespaces (must start with vxt-)', DEFAULT_LAB_NAME)
    .option('--nodes <n>', 'number of nodes', integerIn(1, 64), 3)
    .option('--backend <type>', 'vxlan, ipip, host-gw or bgp (a bird2 per node, Calico\'s BGP mode)', oneOf(['vxlan', 'ipip', 'host-gw', 'bgp'] as const), 'vxlan')
    .option('--encap <mode>', 'bgp: none (kernel routes), ipip or ipip-crosssubnet', oneOf(BGP_ENCAPS))
    .option('--pods <n>', 'pods per node, each a namespace attached by the CNI bridge + host-local plugins (/usr/lib/cni)', integerIn(0, 16), 1)
    .option('--no-ip-masq', "agents leave masquerade to the CNI bridge plugin (FLANNEL_IPMASQ=false): pod-to-pod traffic is NATed, as without flanneld's --ip-masq")
    .option('--kernel-peer', "make the last node a kernel VXLAN node programmed as flannel does (port 8472)")
    .option('--store <etcd|url>', '"etcd": a real etcd on the lab\'s underlay (hub namespace, 192.0.2.2:2379); or a file: URL (default: an embedded store in the lab directory)')
    .option('--ipv6', `dual-stack: pods and TUNs get IPv4 and IPv6 addresses (vxtun init --ipv6-network); the underlay gets ${DEFAULT_UNDERLAY6} too`)
    .option('--ipv6-only', 'IPv6 pods only (EnableIPv4 false; vxtun init --ipv6-only); implies --ipv6')
    .option('--ipv6-underlay', "VXLAN over the IPv6 underlay: agents get --public-ipv6 (their node's 2001:db8:1:: address); implies --ipv6")
    .option('--ipv6-network <cidr>', `the cluster IPv6 network (default ${DEFAULT_IPV6_NETWORK}); implies --ipv6`)
    .action(async (opts) => {
      const name: string = opts.name;
      const ipv6: OverlayIPv6Options | undefined = opts.ipv6 || opts.ipv6Only || opts.ipv6Underlay || opts.ipv6Network !== undefined
        ? {
          ...(opts.ipv6Network !== undefined ? { network: formatCidr6(parseCidr6(opts.ipv6Network)) } : {}),
          only: Boolean(opts.ipv6Only),
          underlay: Boolean(opts.ipv6Underlay),
        }
        : undefined;
      checkOverlayLabOptions({ name, nodes: opts.nodes, backend: opts.backend, kernelPeer: Boolean(opts.kernelPeer), ipv6 });
      if (opts.encap !== undefined && opts.backend !== 'bgp') throw new Error('--encap is for --backend bgp (vxlan and ipip always encapsulate)');
      const store = opts.store === undefined ? {} : storeOption(opts.store);
      requireRoot('vxtun lab up');
      if (readLabState(name) !== undefined || (await listNamespaces()).includes(hubNamespace(name))) {
        throw new Error(`lab ${name} already exists: see it with \`vxtun lab ls\`, remove it with \`vxtun lab down${nameFlag(name)}\``);
      }
      // Ctrl-C while building: remove the half-built lab rather than leave it for `lab down`.
      // The build goes on meanwhile and may add a namespace after a pass listed them: pass again until none is left.
      const interrupted = (): void => {
        process.stderr.write(`\ninterrupted: removing lab ${name}...\n`);
        const removeAll = async (): Promise<void> => {
          for (let pass = 0; pass < 3; pass++) {
            await destroyLab(name);
            if (!(await listNamespaces()).some((ns) => ns === hubNamespace(name) || labNamespacePattern(name).test(ns))) return;
          }
        };
        removeAll().catch(() => undefined).finally(() => process.exit(130));
      };
      process.once('SIGINT', interrupted);
      process.once('SIGTERM', interrupted);
      const say = (line: string): void => void process.stdout.write(`${line}\n`);
      say(`building lab ${name}: ${opts.nodes} node namespace${opts.nodes === 1 ? '' : 's'} on a bridge (underlay 192.0.2.0/24${ipv6 ? ` and ${DEFAULT_UNDERLAY6}` : ''})...`);
      const built = await buildOverlayLab({
        name, nodes: opts.nodes, backend: opts.backend, bgpEncap: opts.encap, kernelPeer: Boolean(opts.kernelPeer), ...store, persistent: true, say,
        ...(ipv6 !== undefined ? { ipv6 } : {}),
        pods: opts.pods, agentArgs: opts.ipMasq === false ? ['--no-ip-masq'] : [],
      });
      process.removeListener('SIGINT', interrupted);
      process.removeListener('SIGTERM', interrupted);
      const peers = built.lab.nodes.length - 1;
      say(`overlay ready in ${built.readySeconds.toFixed(1)} s (every agent routes to the ${peers} other node${peers === 1 ? '' : 's'})`);
      say('');
      say(`lab ${name}: ${describeOverlay(built.record)}, store ${built.record.storeUrl}`);
      say(formatNodeTable(built.record));
      say(usageHints(built.record));
    });

  lab
    .command('down')
    .description("stop a lab's agents and remove its namespaces, devices and files (also after a crash)")
    .option('--name <name>', 'lab name', DEFAULT_LAB_NAME)
    .action(async (opts) => {
      requireRoot('vxtun lab down');
      const name: string = opts.name;
      const state = readLabState(name);
      const record = readLabRecord(name);
      const namespaces = (await listNamespaces()).filter((ns) => ns === hubNamespace(name) || labNamespacePattern(name).test(ns));
      if (state === undefined && record === undefined && namespaces.length === 0) {
        process.stdout.write(`no lab named ${name}\n`);
        return;
      }
      if (state !== undefined && !state.persistent && isLabOwnerAlive(state)) {
        throw new Error(`lab ${name} belongs to running process ${state.ownerPid} (a test or a demo), which removes it itself`);
      }
      // As kubelet would: the pods' networks are torn down (CNI DEL) before the node goes.
      const detached = record ? await detachRecordedPods(record, labWorkDir(name), (line) => void process.stderr.write(`${line}\n`)) : 0;
      const stopped = record ? await stopRecordedAgents(record) : 0;
      await destroyLab(name);
      const left = (await listNamespaces()).filter((ns) => namespaces.includes(ns));
      if (left.length > 0) throw new Error(`could not remove namespaces ${left.join(', ')} (see \`ip netns pids\`)`);
      process.stdout.write(`lab ${name} removed: ${detached} pod${detached === 1 ? '' : 's'} detached (CNI DEL), ${stopped} agent${stopped === 1 ? '' : 's'} stopped, ${namespaces.length} namespace${namespaces.length === 1 ? '' : 's'} deleted\n`);
    });

  lab
    .command('exec <node> <command> [args...]')
    .description("run a command in a node's or a pod's namespace, e.g. `vxtun lab exec n1-p1 -- ping 10.17.3.2`")
    .option('--name <name>', 'lab name', DEFAULT_LAB_NAME)
    .passThroughOptions()
    .action(async (nodeName: string, command: string, args: string[], opts) => {
      requireRoot('vxtun lab exec');
      if (command === '--') {
        // commander keeps the `--` separator among pass-through operands
        if (args.length === 0) throw new Error('no command given: vxtun lab exec NODE -- CMD [ARGS...]');
        command = args[0]!;
        args = args.slice(1);
      }
      const name: string = opts.name;
      const present = await listNamespaces();
      const places = present.filter((ns) => labNamespacePattern(name).test(ns)).map((ns) => ns.slice(name.length + 1));
      if (!present.includes(hubNamespace(name)) && places.length === 0) throw new Error(`no lab named ${name} (start one with \`vxtun lab up${nameFlag(name)}\`)`);
      if (!places.includes(nodeName)) {
        throw new Error(`lab ${name} has no node "${nodeName}" (its nodes and pods: ${places.sort().join(', ') || 'none'})`);
      }
      // As a shell does: 127 for a command not found, 126 for one found but not executable (ip would say 1 for both).
      const missing = commandProblem(command);
      if (missing !== undefined) {
        process.stderr.write(`vxtun: ${command}: ${missing.message}\n`);
        process.exit(missing.code);
      }
      const child = spawn('ip', ['netns', 'exec', `${name}-${nodeName}`, command, ...args], { stdio: 'inherit' });
      // Ctrl-C reaches the command through the terminal; we only wait for it.
      const ignore = (): void => undefined;
      process.on('SIGINT', ignore);
      const code = await new Promise<number>((resolve) => {
        child.once('error', (err) => {
          process.stderr.write(`vxtun: could not run ${command}: ${err.message}\n`);
          resolve(127);
        });
        child.once('exit', (exitCode, signal) => resolve(exitCode ?? 128 + (signal ? constants.signals[signal] : 0)));
      });
      process.exit(code);
    });

  lab
    .command('ls')
    .description('list labs and their nodes')
    .action(async () => {
      const present = new Set(await listNamespaces());
      const states = listLabStates();
      if (states.length === 0) {
        process.stdout.write('no labs (start one with `vxtun lab up`)\n');
        return;
      }
      for (const state of states.sort((a, b) => a.name.localeCompare(b.name))) {
        const record = readLabRecord(state.name);
        const live = state.namespaces.filter((ns) => present.has(ns)).length;
        const owner = state.persistent ? 'lab up' : `process ${state.ownerPid}${isLabOwnerAlive(state) ? '' : ' (gone)'}`;
        process.stdout.write(`${state.name}  made ${state.createdAt} by ${owner}, ${live}/${state.namespaces.length} namespaces present\n`);
        if (record) {
          const note = exitedAgentsNote(record);
          process.stdout.write(`  ${describeOverlay(record)}\n${formatNodeTable(record)}\n${note === undefined ? '' : `${note}\n`}`);
        }
        else process.stdout.write(`  namespaces: ${state.namespaces.join(', ')}\n`);
      }
    });
}
