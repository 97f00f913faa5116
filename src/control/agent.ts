// The agent: one node of the overlay. It wires the parts together in the order a node comes up:
// network config -> lease (flannel's rules) -> TUN with <lease .0>/32 and the cluster network routed into it ->
// underlay socket -> engine -> subnet.env -> watch of the other leases into the tables -> lease renewal.
// A store that goes away later never stops the engine: the tables keep their last state until it returns.
//
// Dual stack (issue 12, vxlan): the lease also holds an IPv6 subnet; the TUN gets `<subnet6>::/128` (flannel gives
// flannel-v6.<VNI> that address) and the route `<IPv6Network> dev <tun>`; the engine gets network6, local.subnet6 and
// local.vtepMac6 (a second VTEP MAC, as flannel's second device has), and, with --public-ipv6, an IPv6 underlay
// socket. Without --public-ipv6 our IPv6 pods travel over the IPv4 underlay (vxtun peers only: a kernel flannel-v6
// device listens on its IPv6 address).
//
// IPv6-only (`"EnableIPv4": false`, as flannel's vxlan backend runs it with flannel-v6.<VNI> alone): no IPv4 subnet
// (the lease key's 0.0.0.0-0 part, PublicIP 0.0.0.0), --public-ipv6 required and --public-ip not needed (ignored with
// a warning when given), the TUN gets only `<subnet6>::/128` and the IPv6 cluster route (never the IPv4 "network",
// which is 0.0.0.0/0 there), the engine's IPv4 socket is a stand-in that carries nothing (io/no-underlay4.ts), and
// subnet.env has only the IPv6 lines; --ip-masq installs the IPv6 rules alone.
import { readFileSync, writeFileSync } from 'node:fs';
import { networkInterfaces } from 'node:os';
import { BufferPool, HEADROOM } from '../buf/pool';
import { createEncapsulation, type LocalVtep } from '../dataplane/encap';
import { DEFAULT_DF_MODE, type DfMode, applyOuterDf } from '../dataplane/outer-df';
import { DEFAULT_BATCH_SIZE, Engine, OFFLOAD_SLOT_BYTES } from '../dataplane/engine';
import type { EncapName, ForwardingTables } from '../dataplane/tables';
import { type HostInterface, interfaceWithAddress } from '../io/interfaces';
import { NoIpv4Underlay } from '../io/no-underlay4';
import { replaceAddress6, replaceRoute, replaceRoute6, setGsoMaxSegments, setTxQueueLength } from '../io/kernel-routes';
import { MAX_SEGMENTS } from '../io/segmentation';
import { DEFAULT_STORE_WAIT_MS, waitForStore } from './store-wait';
import { RawSocket } from '../io/raw';
import { DEFAULT_TUN_IO, DEFAULT_TUN_USO, Tun } from '../io/tun';
import type { TunIoMode } from '../io/types';
import type { DatagramSocket } from '../io/types';
import { UdpSocket } from '../io/udp';
import { openStore } from '../store/open';
import type { Store } from '../store/store';
import { type IPv4, type Mac, formatCidr, formatIPv4, formatMac } from '../wire/address';
import { type IPv6, formatCidr6, formatIPv6, parseIPv6 as parseIPv6Text } from '../wire/address6';
import { IPPROTO_IPIP } from '../wire/ipv4';
import { ApiError } from './api-error';
import { BgpNode, type BgpStatus } from './bgp/bgp-node';
import { type DirectRoute, DirectRoutes } from './direct-routes';
import { type FirewallChoice, IpMasq, type IpMasqStatus } from './ip-masq';
import { ipForwardWarning, ipv6ForwardWarning, readIpForward, readIpv6Forward } from './node-checks';
import { type Lease, NO_IPV4_SUBNET, formatLeaseSubnets, hasIPv4Subnet } from './lease';
import { type ConfigMismatch, type ConfigWatch, type LeaseChecks, LeaseManager, type LeaseKeeper, type LeaseWatch, type RefusedLease } from './lease-manager';
import { LeaseSync } from './lease-sync';
import { TraceHub, type TraceSubscription } from './trace-hub';
import type { Logger } from './log';
import { type NetworkConfig, carriesIPv4 } from './network-config';
import { NodeLock } from './node-lock';
import type { TraceClientStatus } from './status-server';
import { readSubnetEnv, writeSubnetEnv } from './subnet-env';
import { unusableUnderlayAddress, unusableUnderlayAddress6 } from './special-addresses';
import { UnderlayWatch } from './underlay-watch';
import { deriveVtepMac, deriveVtepMac6 } from './vtep-mac';

export interface AgentOptions {
  storeUrl: string;
  prefix: string;
  /**
   * This node's IPv4 underlay address (--public-ip, flannel's PublicIP). Required when the network carries IPv4;
   * an IPv6-only network needs none (its lease's PublicIP is 0.0.0.0, as flannel writes) and ignores one given.
   */
  publicIp?: IPv4;
  /**
   * This node's IPv6 underlay address (--public-ipv6, flannel's PublicIPv6): written into the lease, and VXLAN over
   * IPv6 is sent from and received on it. Must be an address of this host. Without it, in a dual-stack network, IPv6
   * pods travel over the IPv4 underlay.
   */
  publicIpv6?: IPv6;
  tunName: string;
  subnetFile: string;
  /**
   * flanneld's --ip-masq: install its masquerade rules (src/control/ip-masq.ts) and write FLANNEL_IPMASQ=true, so the
   * CNI bridge plugin does not masquerade pod-to-pod traffic. Default false here; `vxtun agent` defaults it to true,
   * as kube-flannel's manifest does.
   */
  ipMasq?: boolean;
  /** Which firewall tooling installs those rules (default 'auto': iptables when present, else nftables). */
  ipMasqTool?: FirewallChoice;
  /** How often the masquerade rules are checked and restored, in ms (default 10 s). */
  ipMasqResyncMs?: number;
  leaseTtlSeconds: number;
  /**
   * This node's identity in its lease (VxtunNodeName; `vxtun agent` defaults it to the host name, as Calico and
   * flannel name nodes): the lease is found again by it when the public IP changes, and the VTEP MAC derives from it.
   * Without one, the public IP serves as before.
   */
  nodeName?: string;
  /** Defaults to a MAC derived from the node name (or the public IP without one), stable across restarts. */
  vtepMac?: Mac;
  /** The IPv6 VTEP's MAC (BackendV6Data.VtepMAC); defaults to a second MAC derived like vtepMac. */
  vtepMac6?: Mac;
  batchSize?: number;
  poolSlots?: number;
  /** TUN TSO + checksum offload, UDP GSO and GRO (default on): 64 KB through the kernel per system call. */
  offload?: boolean;
  /** Busy-poll window in µs after each wake-up (default 0: off); trades a spinning core for wake-up latency. */
  busyPollUs?: number;
  /** IP-in-IP: TCP super-packets segmented and sent by one native call (default true); false: the earlier path. */
  ipipSegmentBatch?: boolean;
  /** TUN reads and writes: a system call per packet (`readv`) or a batch per io_uring_enter (`uring`); default DEFAULT_TUN_IO. */
  tunIo?: TunIoMode;
  /** With offload: write runs of one UDP flow's datagrams into the TUN as one UDP GSO write (Linux 6.2+); default DEFAULT_TUN_USO. */
  tunUso?: boolean;
  /** VXLAN: sockets to send from, on as many ephemeral source ports, one per inner flow's hash (ECMP entropy). */
  sourcePorts?: number;
  /** Outer DF bit (ip-link(8) `df`): 'unset' (default, as the kernel's vxlan), 'set', or 'inherit' from the inner packet. */
  df?: DfMode;
  /** bgp: directory of our BIRD's config, control socket and pid file (default /run/vxtun/bird-<public-ip>). */
  birdDir?: string;
  /** How long a start waits for an unreachable store (read the config, acquire the lease) in ms; default 60 s. */
  storeWaitMs?: number;
  /** bgp: how often BIRD's sessions are read for status and logs (default 2000 ms). */
  bgpStatusIntervalMs?: number;
  log: Logger;
  /**
   * The agent can no longer serve (its TUN was deleted, the underlay socket broke, its lease was lost): called once
   * with an error whose message says what happened; the caller shuts down and exits non-zero.
   */
  onFatal?: (error: Error) => void;
}

export interface AgentStatus {
  lease: {
    subnet: string;
    publicIp: string;
    nodeName?: string;
    vtepMac?: string;
    expiresAt?: number;
    /** Dual stack: our IPv6 subnet, PublicIPv6 and IPv6 VTEP MAC (BackendV6Data). */
    subnet6?: string;
    publicIpv6?: string;
    vtepMac6?: string;
  };
  network: { network: string; subnetLen: number; backend: NetworkConfig['backend']; ipv6Network?: string; ipv6SubnetLen?: number };
  /** Absent for host-gw: the kernel forwards, vxtun only programs routes. */
  /** The TUN and how the data plane uses it: offloads (TSO, UDP segmentation on writes), readv or io_uring, busy-poll µs. */
  tun?: { name: string; mtu: number; kernelQueueDrops: number; offload?: boolean; uso?: boolean; io?: string; busyPollUs?: number };
  /**
   * addressPresent: whether --public-ip is still on an interface (checked every 5 s); problem says what to do when not.
   * IPv6-only: the device holding --public-ipv6 and that address's prefix (not watched: addressPresent stays true).
   */
  underlay: { device: string; subnet: string; mtu: number; addressPresent: boolean; problem?: string; /** Outer DF policy (absent for host-gw). */ df?: DfMode };
  storeConnected: boolean;
  /** Leases under subnets/ kept out of the tables (invalid, or in conflict with an accepted one), and why. */
  refusedLeases: RefusedLease[];
  /** Present while the stored network config differs from the running one (kept until restart, as flanneld does). */
  configMismatch?: ConfigMismatch;
  routes: { subnet: string; via: string; encap: EncapName | 'direct'; dev?: string }[];
  neighbors: { address: string; mac: string }[];
  fdb: { mac: string; dst: string }[];
  /** IPv6 routes (`ip -6 route`): `<v6 subnet> via <v6 subnet>::`, longest prefixes first. Empty without IPv6. */
  routes6?: { subnet: string; via: string; encap: EncapName | 'direct'; dev?: string }[];
  /** IPv6 neighbors (`ip -6 neigh`): `<v6 subnet>::` -> v6 VTEP MAC. */
  neighbors6?: { address: string; mac: string }[];
  /** FDB entries whose destination is an IPv6 underlay (`bridge fdb ... dst <PublicIPv6>`). */
  fdb6?: { mac: string; dst: string }[];
  counters?: Record<string, unknown>;
  pool?: { capacity: number; inUse: number; lowWater: number };
  /** The agent process: a heap that stays flat under load says the data path does not allocate per packet. */
  memory: { heapUsedBytes: number; rssBytes: number };
  /** Added by the API server (status-server.ts): each attached `vxtun trace` client's queue and drops. */
  traceClients?: TraceClientStatus[];
  /** Node prerequisites for pods: net.ipv4.ip_forward in our namespace (null: unreadable), and why it matters. */
  node?: { ipForward: boolean | null; warning?: string; /** Dual stack: net.ipv6.conf.all.forwarding (null: unreadable). */ ipv6Forward?: boolean | null };
  /**
   * flanneld's --ip-masq: off, or the tool, the rules' place and their state. `unsupported`: asked for but not
   * installed, and why (an IPv6-only network: vxtun's masquerade rules are IPv4).
   */
  ipMasq?: { enabled: false; unsupported?: string } | ({ enabled: true } & IpMasqStatus);
  /** bgp: our BIRD, its sessions as `birdc show protocols` shows them, readiness. */
  bgp?: BgpStatus;
}

/**
 * Refuses options no agent can run with, before anything on the node changes. An underlay address that is loopback,
 * multicast or reserved would be written into our lease and programmed by every other node as our VTEP.
 */
export function checkAgentOptions(options: Pick<AgentOptions, 'publicIp'> & { publicIpv6?: IPv6 }): void {
  if (options.publicIp === undefined && options.publicIpv6 === undefined) {
    throw new Error('pass --public-ip with this host\'s IPv4 underlay address (or, in an IPv6-only network, --public-ipv6 with its IPv6 one)');
  }
  const unusable = options.publicIp === undefined ? undefined : unusableUnderlayAddress(options.publicIp);
  if (unusable !== undefined) {
    throw new Error(`--public-ip ${unusable}: other nodes cannot reach this node there; pass this host's address on the network the nodes share`);
  }
  if (options.publicIpv6 !== undefined) {
    const unusable6 = unusableUnderlayAddress6(options.publicIpv6);
    if (unusable6 !== undefined) {
      throw new Error(`--public-ipv6 ${unusable6}: other nodes cannot reach this node there; pass this host's global or unique local IPv6 address on the network the nodes share`);
    }
  }
}

/**
 * Why this node cannot run `config` with these options (an IPv6 option without IPv6 in the network, an IPv6-only
 * network without --public-ipv6, an IPv4 network without --public-ip, ...), or undefined.
 */
export function agentConfigProblem(config: NetworkConfig, options: { publicIp?: IPv4; publicIpv6?: IPv6 }): string | undefined {
  if (!carriesIPv4(config)) {
    // flannel's vxlan backend makes only flannel-v6.<VNI> then, bound to the node's IPv6 address: it needs one.
    if (config.ipv6 === undefined) return 'the network carries neither IPv4 nor IPv6 ("EnableIPv4": false without "EnableIPv6"): write a config with vxtun init';
    if (options.publicIpv6 === undefined) {
      return 'the network is IPv6-only ("EnableIPv4": false): pass --public-ipv6 with this host\'s IPv6 address on the network the nodes share (it is the underlay; --public-ip is not needed)';
    }
    return undefined;
  }
  if (options.publicIp === undefined) {
    return 'the network carries IPv4: pass --public-ip with this host\'s IPv4 address on the network the nodes share (only an IPv6-only network, "EnableIPv4": false, runs without it)';
  }
  if (config.ipv6 !== undefined && config.backend.type === 'host-gw' && options.publicIpv6 === undefined) {
    return 'host-gw with IPv6 routes every IPv6 subnet via its node\'s PublicIPv6 (as flannel does): pass --public-ipv6 with this host\'s IPv6 address on the shared segment';
  }
  if (options.publicIpv6 !== undefined && config.ipv6 === undefined) {
    return '--public-ipv6 was given but the network carries no IPv6 (set "EnableIPv6": true and "IPv6Network", e.g. vxtun init --ipv6-network CIDR)';
  }
  return undefined;
}

/** The interface of this host with the IPv6 address and that address's prefix (what `--public-ip` finds for IPv4). */
function interfaceOf6(address: IPv6): { name: string; cidr: string } | undefined {
  for (const [name, addrs] of Object.entries(networkInterfaces())) {
    for (const a of addrs ?? []) {
      if (a.family !== 'IPv6') continue;
      try {
        if (formatIPv6(parseAddress6(a.address)) === formatIPv6(address)) return { name, cidr: a.cidr ?? `${formatIPv6(address)}/128` };
      } catch {
        // a zoned or odd address: not ours to match
      }
    }
  }
  return undefined;
}

/** The underlay of an IPv6-only node: the device with --public-ipv6 (its IPv4 subnet is the empty 0.0.0.0/0). */
function underlayOf6(address: IPv6): (HostInterface & { cidr6: string }) | undefined {
  const found = interfaceOf6(address);
  if (found === undefined) return undefined;
  let mtu = 1500;
  try {
    mtu = Number(readFileSync(`/sys/class/net/${found.name}/mtu`, 'utf8').trim());
  } catch {
    // no sysfs: the Ethernet default
  }
  return { name: found.name, mtu, subnet: NO_IPV4_SUBNET, cidr6: found.cidr };
}

function parseAddress6(text: string): IPv6 {
  const zone = text.indexOf('%');
  return parseIPv6Text(zone < 0 ? text : text.slice(0, zone));
}

/**
 * The IPv6 tables as `ip -6 route` / `ip -6 neigh` / `bridge fdb` would list them (status, --json, metrics); empty
 * lists without a data plane.
 */
export function ipv6TablesStatus(tables: ForwardingTables | undefined, direct: DirectRoute[] = []): Pick<AgentStatus, 'routes6' | 'neighbors6' | 'fdb6'> {
  const directRoutes = direct.map((r) => ({ subnet: r.subnet, via: r.via, encap: 'direct' as const, dev: r.dev }));
  if (tables === undefined) return { routes6: directRoutes, neighbors6: [], fdb6: [] };
  return {
    routes6: [
      ...directRoutes,
      ...[...tables.routes6.entries()].map(([subnet, r]) => ({ subnet: formatCidr6(subnet), via: formatIPv6(r.gateway), encap: r.encap })),
    ],
    neighbors6: [...tables.neighbors6].map(([address, mac]) => ({ address: formatIPv6(address), mac: formatMac(mac) })),
    fdb6: [...tables.fdb6].map(([mac, dst]) => ({ mac: formatMac(mac), dst: formatIPv6(dst) })),
  };
}

/** The encapsulating half of a node: absent for host-gw. */
interface DataPlane {
  engine: Engine;
  pool: BufferPool;
  tun: Tun;
  /** Absent for bgp: BIRD's routes fill the tables, not the leases. */
  sync?: LeaseSync;
}

const DEFAULT_POOL_SLOTS = 1024;
const DEFAULT_SOURCE_PORTS = 4;
/** Measured with iperf3 in the lab: 500 (the default) lost ~2,500 segments/s to TUN queue drops, 1000 almost none. */
const TUN_QUEUE_PACKETS = 1000;

/** Packets the kernel dropped because the TUN queue was full while we were busy (before vxtun ever saw them). */
function tunQueueDrops(device: string): number {
  try {
    return Number(readFileSync(`/sys/class/net/${device}/statistics/tx_dropped`, 'utf8'));
  } catch {
    return 0;
  }
}

export class Agent {
  private storeConnected = true;
  private readonly traceHub: TraceHub;
  private watch?: LeaseWatch;
  private configWatch?: ConfigWatch;
  private keeper?: LeaseKeeper;
  /** One agent per network namespace: held from the first step of start() to the last of stop(). */
  private nodeLock?: NodeLock;
  private underlayWatch?: UnderlayWatch;
  private fatalError?: Error;
  private masq?: IpMasq;
  /** IPv6-only: the prefix of --public-ipv6 on the underlay device (status shows it as the underlay subnet). */
  private underlay6Cidr?: string;

  private constructor(
    private readonly options: AgentOptions,
    private readonly store: Store,
    readonly config: NetworkConfig,
    private lease: Lease,
    private readonly underlay: HostInterface,
    private readonly dataPlane: DataPlane | undefined,
    private readonly direct: DirectRoutes | undefined,
    private readonly bgp: BgpNode | undefined,
  ) {
    this.traceHub = new TraceHub((tracer) => {
      if (dataPlane) dataPlane.engine.tracer = tracer;
    });
  }

  /** Sends the journeys of matching packets to `subscription` until the returned function is called. */
  trace(subscription: TraceSubscription): () => void {
    if (this.dataPlane === undefined) {
      throw new ApiError(409, `${this.config.backend.type === 'bgp' ? 'bgp with encap none' : 'host-gw'} has no vxtun data plane to trace: the kernel forwards; use tcpdump on the underlay device`);
    }
    return this.traceHub.subscribe(subscription);
  }

  static async start(options: AgentOptions): Promise<Agent> {
    checkAgentOptions(options);
    const log = options.log;
    // Before anything changes on this node: a second agent would take over (or delete) the first one's routes.
    const nodeLock = await NodeLock.acquire();
    let store: Store;
    try {
      store = openStore(options.storeUrl);
    } catch (err) {
      await nodeLock.release();
      throw err;
    }
    let masq: IpMasq | undefined;
    try {
      const leases = new LeaseManager({ store, prefix: options.prefix, ttlSeconds: options.leaseTtlSeconds, log });
      const storeWait = { waitMs: options.storeWaitMs ?? DEFAULT_STORE_WAIT_MS, log };
      const config = await waitForStore('read the network config', () => leases.readNetworkConfig(), storeWait);
      const problem = agentConfigProblem(config, options);
      if (problem !== undefined) throw new Error(problem);
      const backend = config.backend;
      const ipv4 = carriesIPv4(config);
      if (!ipv4 && options.publicIp !== undefined) {
        log.warn('--public-ip is not used: the network is IPv6-only ("EnableIPv4": false), so the lease\'s PublicIP is 0.0.0.0 and --public-ipv6 is the underlay', { publicIp: formatIPv4(options.publicIp) });
      }
      // IPv6-only: flannel's zero PublicIP; every IPv4 use below is skipped.
      const publicIp4: IPv4 = ipv4 ? options.publicIp! : 0;
      // The node's underlay address as text: names the default BIRD dir, the VTEP MACs without a node name, logs.
      const publicIp = ipv4 ? formatIPv4(publicIp4) : formatIPv6(options.publicIpv6!);
      const underlay6 = options.publicIpv6 !== undefined ? underlayOf6(options.publicIpv6) : undefined;
      if (options.publicIpv6 !== undefined && underlay6 === undefined) {
        throw new Error(`no interface of this host has the address ${formatIPv6(options.publicIpv6)}: pass --public-ipv6 with one of this host's IPv6 addresses`);
      }
      const underlay = ipv4 ? interfaceWithAddress(publicIp) : underlay6;
      if (underlay === undefined) {
        throw new Error(`no interface of this host has the address ${publicIp}: pass --public-ip with one of this host's IPv4 addresses`);
      }
      const vtepMac = options.vtepMac ?? deriveVtepMac(options.nodeName ?? publicIp);
      // Our IPv6 VTEP: in a dual-stack vxlan network, with or without an IPv6 underlay (then IPv6 rides the IPv4 one).
      const ipv6Vtep = config.ipv6 !== undefined && backend.type === 'vxlan';
      const vtepMac6 = ipv6Vtep ? (options.vtepMac6 ?? deriveVtepMac6(options.nodeName ?? publicIp)) : undefined;
      const vni = backend.type === 'vxlan' ? backend.vni : 0;
      const previous = await readSubnetEnv(options.subnetFile).catch((err: Error) => {
        log.warn('ignoring an unreadable subnet file: a new subnet may be chosen', { file: options.subnetFile, error: err.message });
        return undefined;
      });
      const lease = await waitForStore('acquire a lease', () => leases.acquire(
        {
          publicIp: publicIp4,
          backendType: backend.type,
          // IPv6-only: flannel's vxlan backend has no IPv4 VTEP, so no BackendData (only BackendV6Data).
          backendData: backend.type === 'vxlan' && ipv4 ? { vni, vtepMac } : undefined,
          ...(options.publicIpv6 !== undefined ? { publicIpv6: options.publicIpv6 } : {}),
          ...(vtepMac6 !== undefined ? { backendV6Data: { vni, vtepMac: vtepMac6 } } : {}),
          nodeName: options.nodeName,
        },
        { previousSubnet: previous?.subnet, previousSubnet6: previous?.subnet6 },
      ), storeWait);
      log.info('lease acquired', {
        subnet: formatLeaseSubnets(lease.subnet, lease.subnet6),
        node: options.nodeName,
        publicIp: ipv4 ? publicIp : undefined,
        publicIpv6: options.publicIpv6 !== undefined ? formatIPv6(options.publicIpv6) : undefined,
        vtepMac: backend.type === 'vxlan' && ipv4 ? formatMac(vtepMac) : undefined,
        vtepMac6: vtepMac6 !== undefined ? formatMac(vtepMac6) : undefined,
      });

      const directRouting = backend.type === 'host-gw' || (backend.type !== 'bgp' && backend.directRouting);
      const direct = directRouting ? new DirectRoutes(underlay, lease.subnet, backend.type, backend.type === 'host-gw', log, backend.type === 'host-gw' ? lease.subnet6 : undefined) : undefined;
      // bgp with encap none is host-gw's shape (BIRD programs the kernel); with IP-in-IP, vxtun's ipip data plane.
      const kernelForwards = backend.type === 'host-gw' || (backend.type === 'bgp' && backend.encap === 'none');
      const dataPlane = kernelForwards ? undefined : await Agent.startDataPlane(options, config, lease, underlay, vtepMac, vtepMac6, direct);
      const mtu = dataPlane?.tun.mtu ?? underlay.mtu;
      // flanneld's rules per family: IPv4 with an IPv4 subnet, IPv6 (ip6tables / table ip6 vxtun) with an IPv6 one; an
      // IPv6-only node gets only the IPv6 rules (its IPv4 "network" is 0.0.0.0/0).
      const ipMasq = options.ipMasq ?? false;
      if (ipv4 && readIpForward() === false) log.warn(ipForwardWarning()); // IPv4 forwarding matters only with IPv4 pods
      if (config.ipv6 !== undefined && readIpv6Forward() === false) log.warn(ipv6ForwardWarning());
      // Rules before subnet.env: a pod attached after the file appears is already covered (never throws).
      masq = ipMasq
        ? await IpMasq.start({
          ...(ipv4 ? { networks: { network: config.network, subnet: lease.subnet } } : {}),
          // flanneld with EnableIPv6: the same rules with ip6tables / table ip6 vxtun.
          ...(config.ipv6 !== undefined && lease.subnet6 !== undefined ? { networks6: { network: config.ipv6.network, subnet: lease.subnet6 } } : {}),
          choice: options.ipMasqTool, resyncMs: options.ipMasqResyncMs, log,
        })
        : undefined;
      await writeSubnetEnv(options.subnetFile, {
        network: config.network,
        subnet: lease.subnet,
        ...(config.ipv6 !== undefined && lease.subnet6 !== undefined ? { network6: config.ipv6.network, subnet6: lease.subnet6 } : {}),
        mtu,
        ipMasq,
      });
      const bgp = backend.type === 'bgp'
        ? new BgpNode({
          lease, config, underlay, log, tables: dataPlane?.engine.tables,
          dir: options.birdDir ?? `/run/vxtun/bird-${publicIp}`, statusIntervalMs: options.bgpStatusIntervalMs,
        })
        : undefined;
      if (bgp) {
        try {
          await bgp.start();
        } catch (err) {
          await bgp.stop().catch(() => undefined);
          throw err;
        }
      }
      const agent = new Agent(options, store, config, lease, underlay, dataPlane, direct, bgp);
      agent.nodeLock = nodeLock;
      const watched = [...(ipv4 ? [publicIp] : []), ...(options.publicIpv6 !== undefined ? [formatIPv6(options.publicIpv6)] : [])];
      if (watched.length > 0) agent.underlayWatch = new UnderlayWatch(watched, log);
      agent.underlay6Cidr = ipv4 ? undefined : underlay6?.cidr6;
      await agent.follow(leases, {
        config,
        ownSubnet: lease.subnet,
        ownVtepMac: backend.type === 'vxlan' && ipv4 ? vtepMac : undefined,
        ownPublicIp: publicIp4,
        ownSubnet6: lease.subnet6,
        ownVtepMac6: vtepMac6,
        ownPublicIpv6: options.publicIpv6,
      });
      const ready = agent.status();
      log.info('agent ready', { subnet: formatLeaseSubnets(lease.subnet, lease.subnet6), routes: ready.routes.length + (ready.routes6?.length ?? 0) });
      agent.masq = masq;
      return agent;
    } catch (err) {
      await masq?.stop();
      await store.close().catch(() => {});
      await nodeLock.release();
      throw err;
    }
  }

  /** TUN, underlay socket and engine for vxlan / ipip; lease sync into the engine's tables. */
  private static async startDataPlane(
    options: AgentOptions,
    config: NetworkConfig,
    lease: Lease,
    underlay: HostInterface,
    vtepMac: Mac,
    vtepMac6: Mac | undefined,
    direct: DirectRoutes | undefined,
  ): Promise<DataPlane> {
    const backend = config.backend;
    if (backend.type === 'host-gw') throw new Error('host-gw has no data plane');
    // bgp's data plane (encap ipip / ipip-crosssubnet) is vxtun's IP-in-IP, its routes learned from BIRD.
    const encapName: EncapName = backend.type === 'bgp' ? 'ipip' : backend.type;
    const vni = backend.type === 'vxlan' ? backend.vni : 0;
    const subnet6 = vtepMac6 !== undefined ? lease.subnet6 : undefined;
    const ipv4 = hasIPv4Subnet(lease.subnet);
    const local: LocalVtep = {
      vtepIp: lease.subnet.address, subnet: lease.subnet, vtepMac, underlayIp: ipv4 ? options.publicIp! : 0, vni, port: backend.type === 'vxlan' ? backend.port : 0,
      ...(subnet6 !== undefined ? { subnet6, vtepMac6 } : {}),
      // Traces show it as the outer source of VXLAN over the IPv6 underlay (else they print ::).
      ...(subnet6 !== undefined && options.publicIpv6 !== undefined ? { underlayIp6: options.publicIpv6 } : {}),
    };
    const encap = createEncapsulation(encapName, local);
    const underlayMtu = backend.type === 'vxlan' && backend.mtu !== undefined ? backend.mtu : underlay.mtu;
    // One TUN carries both families: over an IPv6 underlay the outer header is 20 bytes longer (40 instead of 20), so
    // the overlay MTU leaves room for it (the kernel's vxlan device over IPv6 likewise takes 70, not 50).
    // The engine takes the IPv4-underlay figure and checks packets bound for the IPv6 underlay 20 bytes lower itself.
    const underlay6 = subnet6 !== undefined && options.publicIpv6 !== undefined;
    const engineMtu = underlayMtu - encap.overhead;
    const overlayMtu = engineMtu - (underlay6 ? 20 : 0);
    if (subnet6 !== undefined && overlayMtu < 1280) {
      throw new Error(`the overlay MTU would be ${overlayMtu}, below IPv6's minimum 1280 (RFC 8200): raise the underlay MTU (${underlayMtu}) to carry IPv6`);
    }
    const offload = options.offload ?? true;
    const tun = Tun.open({
      // IPv6-only: no IPv4 address (flannel-v6.<VNI> has only <subnet6>::/128).
      name: options.tunName, mtu: overlayMtu, address: ipv4 ? lease.subnet.address : undefined, prefixLength: 32, offload,
      io: options.tunIo ?? DEFAULT_TUN_IO, uso: options.tunUso ?? DEFAULT_TUN_USO,
    });
    if (tun.ioFallback !== undefined) options.log.warn('TUN io_uring unavailable: one system call per packet', { reason: tun.ioFallback });
    if (tun.usoFallback !== undefined) options.log.info('TUN UDP segmentation offload unavailable: UDP written one datagram at a time', { reason: tun.usoFallback });
    if (subnet6 === undefined) {
      // An IPv4 overlay: keep the kernel from sending router solicitations and MLD reports into it (flannel does too).
      try {
        writeFileSync(`/proc/sys/net/ipv6/conf/${tun.name}/disable_ipv6`, '1');
      } catch {
        // no IPv6 on this host: nothing to silence
      }
    }
    let socket: DatagramSocket | undefined;
    let socket6: DatagramSocket | undefined;
    const senders: DatagramSocket[] = [];
    let sending: DatagramSocket[];
    try {
      await setTxQueueLength(tun.name, TUN_QUEUE_PACKETS);
      // A small-MSS flow would otherwise get 64 KB super-packets of ~700 segments, more than we cut (gso/cannot-segment).
      if (offload) {
        await setGsoMaxSegments(tun.name, MAX_SEGMENTS).catch((err: Error) =>
          options.log.warn(`cannot limit the TUN's gso_max_segs to ${MAX_SEGMENTS} (iproute2 or kernel too old): a small-MSS flow's super-packets may be dropped as gso/cannot-segment`, { error: err.message }),
        );
      }
      // Never in an IPv6-only network: its "network" is 0.0.0.0/0, the default route.
      if (ipv4) await replaceRoute(formatCidr(config.network), tun.name);
      if (subnet6 !== undefined) {
        await replaceAddress6(formatIPv6(subnet6.address), tun.name);
        await replaceRoute6(formatCidr6(config.ipv6!.network), tun.name);
      }
      if (!ipv4) socket = new NoIpv4Underlay();
      else if (backend.type === 'vxlan') socket = UdpSocket.open({ address: options.publicIp!, port: backend.port, gro: offload });
      else socket = RawSocket.open({ protocol: IPPROTO_IPIP, address: options.publicIp! });
      senders.push(socket);
      // The first sender is the receiving socket (port 4789/8472); the others take ephemeral ports (32768-60999).
      const extra = backend.type === 'vxlan' && ipv4 ? (options.sourcePorts ?? DEFAULT_SOURCE_PORTS) - 1 : 0;
      for (let i = 0; i < extra; i++) senders.push(UdpSocket.open({ address: options.publicIp!, port: 0, recvBufferBytes: 0 }));
      // The outer DF bit is IPv4's (IPv6 never fragments on the way): nothing to apply without an IPv4 underlay.
      sending = ipv4 ? applyOuterDf(senders, options.df ?? DEFAULT_DF_MODE, encap.headroom) : senders;
      if (underlay6) {
        try {
          socket6 = UdpSocket.open({ address: options.publicIpv6!, port: local.port, gro: offload });
        } catch (err) {
          throw new Error(`cannot open the IPv6 underlay socket on [${formatIPv6(options.publicIpv6!)}]:${local.port}: ${(err as Error).message}`);
        }
      }
    } catch (err) {
      for (const sender of senders) sender.close();
      tun.close();
      throw err;
    }
    // Offload reads and GRO receives are up to 64 KB each: fewer, larger slots (one batch each way, ICMP replies, spare).
    const batch = options.batchSize ?? DEFAULT_BATCH_SIZE;
    const slotSize = Math.ceil((HEADROOM + (offload ? OFFLOAD_SLOT_BYTES : underlayMtu + 64)) / 64) * 64;
    const pool = new BufferPool(options.poolSlots ?? (offload ? 4 * batch : DEFAULT_POOL_SLOTS), slotSize);
    const engine = new Engine({
      tun, socket, senders: sending, encap, pool, local, overlayMtu: engineMtu, network: config.network, batchSize: options.batchSize, log: options.log, onFatal: options.onFatal,
      nativeSegments: options.ipipSegmentBatch,
      busyPollUs: options.busyPollUs,
      ...(subnet6 !== undefined ? { network6: config.ipv6!.network } : {}),
      ...(socket6 !== undefined ? { socket6 } : {}),
    });
    engine.start();
    options.log.info('data plane up', { tun: tun.name, mtu: overlayMtu, backend: backend.type, underlay: underlay.name, port: local.port || undefined, offload, tunIo: tun.io, tunUso: tun.uso, df: ipv4 ? (options.df ?? DEFAULT_DF_MODE) : undefined });
    const ipv6 = subnet6 !== undefined ? { ownSubnet6: subnet6, underlay6: socket6 !== undefined } : undefined;
    const sync = backend.type === 'bgp' ? undefined : new LeaseSync(engine, lease.subnet, backend.type, options.log, direct ? (l) => direct.isDirect(l) : undefined, ipv6);
    return { engine, pool, tun, sync };
  }

  /** Watches the other leases into the tables and keeps our own lease alive. */
  private async follow(leases: LeaseManager, checks: LeaseChecks): Promise<void> {
    const log = this.options.log;
    this.configWatch = await leases.watchNetworkConfig(this.config);
    this.watch = await leases.watchLeases({
      onSnapshot: (all) => {
        this.dataPlane?.sync?.applySnapshot(all);
        this.direct?.applySnapshot(all).catch((err: Error) => log.error('direct routes failed', { error: err.message }));
        void this.bgp?.applySnapshot(all);
      },
      onEvents: (events) => {
        this.dataPlane?.sync?.applyEvents(events);
        this.direct?.applyEvents(events).catch((err: Error) => log.error('direct routes failed', { error: err.message }));
        void this.bgp?.applyEvents(events);
      },
      onConnectionChange: (connected, error) => {
        this.storeConnected = connected;
        if (connected) log.info('store reachable again: catching up with lease changes', { store: this.store.url });
        else log.warn('store unreachable: forwarding goes on with the last known tables', { store: this.store.url, error: error?.message });
      },
    }, { checks: { ...checks, ownNodeName: this.lease.attrs.nodeName } }); // a lease naming us elsewhere is refused
    this.keeper = leases.keep(this.lease, {
      onRenewed: (renewed) => {
        this.lease = renewed;
      },
      onLost: (lost, error) => {
        // As flanneld: the subnet is someone else's now, so routing it here would blackhole their traffic. Stop.
        this.fatal(new Error(`${error.message}: this node no longer owns ${formatLeaseSubnets(lost.subnet, lost.subnet6)}; start the agent again to acquire a new subnet`));
      },
    });
  }

  status(): AgentStatus {
    const data = this.lease.attrs.backendData;
    const data6 = this.lease.attrs.backendV6Data;
    const plane = this.dataPlane;
    const tables = plane?.engine.tables;
    const directRoutes = [
      ...(this.direct?.current ?? []),
      ...(this.bgp?.directRoutes ?? []).map((r) => ({ subnet: formatCidr(r.subnet), via: formatIPv4(r.gateway), dev: r.dev })),
    ].map((r) => ({ subnet: r.subnet, via: r.via, encap: 'direct' as const, dev: r.dev }));
    return {
      lease: {
        // IPv6-only: '-' and no publicIp, as `vxtun status` and the lab record show a missing IPv4 subnet.
        subnet: hasIPv4Subnet(this.lease.subnet) ? formatCidr(this.lease.subnet) : '-',
        publicIp: formatIPv4(this.lease.attrs.publicIp),
        nodeName: this.lease.attrs.nodeName,
        vtepMac: data?.vtepMac !== undefined ? formatMac(data.vtepMac) : undefined,
        expiresAt: this.lease.expiresAt,
        ...(this.lease.subnet6 !== undefined ? { subnet6: formatCidr6(this.lease.subnet6) } : {}),
        ...(this.lease.attrs.publicIpv6 !== undefined ? { publicIpv6: formatIPv6(this.lease.attrs.publicIpv6) } : {}),
        ...(data6?.vtepMac !== undefined ? { vtepMac6: formatMac(data6.vtepMac) } : {}),
      },
      network: {
        network: formatCidr(this.config.network), subnetLen: this.config.subnetLen, backend: this.config.backend,
        ...(this.config.ipv6 !== undefined ? { ipv6Network: formatCidr6(this.config.ipv6.network), ipv6SubnetLen: this.config.ipv6.subnetLen } : {}),
      },
      tun: plane
        ? {
          name: plane.tun.name, mtu: plane.tun.mtu, kernelQueueDrops: tunQueueDrops(plane.tun.name),
          offload: plane.tun.offload, uso: plane.tun.uso, io: plane.tun.io, busyPollUs: this.options.busyPollUs ?? 0,
        }
        : undefined,
      underlay: {
        device: this.underlay.name, subnet: this.underlay6Cidr ?? formatCidr(this.underlay.subnet), mtu: this.underlay.mtu,
        ...(this.underlayWatch?.state ?? { addressPresent: true }), df: plane && hasIPv4Subnet(this.lease.subnet) ? (this.options.df ?? DEFAULT_DF_MODE) : undefined,
      },
      storeConnected: this.storeConnected,
      refusedLeases: this.watch?.refused ?? [],
      configMismatch: this.configWatch?.mismatch,
      routes: [
        ...directRoutes,
        ...(tables ? [...tables.routes.entries()].map(([subnet, r]) => ({ subnet: formatCidr(subnet), via: formatIPv4(r.gateway), encap: r.encap })) : []),
      ],
      neighbors: tables ? [...tables.neighbors].map(([address, mac]) => ({ address: formatIPv4(address), mac: formatMac(mac) })) : [],
      fdb: tables ? [...tables.fdb].map(([mac, dst]) => ({ mac: formatMac(mac), dst: formatIPv4(dst) })) : [],
      ...(this.config.ipv6 !== undefined ? ipv6TablesStatus(tables, this.direct?.current6) : {}),
      counters: plane?.engine.counters.toJSON(),
      pool: plane ? { capacity: plane.pool.capacity, inUse: plane.pool.inUse, lowWater: plane.pool.lowWater } : undefined,
      memory: { heapUsedBytes: process.memoryUsage().heapUsed, rssBytes: process.memoryUsage.rss() },
      node: Agent.nodeStatus(this.config.ipv6 !== undefined, carriesIPv4(this.config)),
      ipMasq: this.masq
        ? { enabled: true, ...this.masq.status() }
        : { enabled: false },
      ...(this.bgp ? { bgp: this.bgp.status() } : {}),
    };
  }

  /** `ipv4` false (IPv6-only): ip_forward is still shown, but off is no reason to warn. */
  private static nodeStatus(ipv6: boolean, ipv4 = true): NonNullable<AgentStatus['node']> {
    const ipForward = readIpForward() ?? null;
    const node: NonNullable<AgentStatus['node']> = ipForward === false && ipv4 ? { ipForward, warning: ipForwardWarning() } : { ipForward };
    if (!ipv6) return node;
    node.ipv6Forward = readIpv6Forward() ?? null;
    if (node.ipv6Forward === false) node.warning = node.warning === undefined ? ipv6ForwardWarning() : `${node.warning}; ${ipv6ForwardWarning()}`;
    return node;
  }

  /** Stops forwarding and closes the store. The lease stays in the store, as flannel leaves it, for our restart. */
  async stop(): Promise<void> {
    this.underlayWatch?.stop();
    this.watch?.close();
    this.configWatch?.close();
    this.keeper?.stop();
    await this.bgp?.stop();
    this.dataPlane?.engine.stop();
    try {
      await this.masq?.stop();
      await this.store.close();
    } finally {
      await this.nodeLock?.release();
    }
  }

  /** The agent cannot serve any more: tells options.onFatal once (or logs, when nobody listens). */
  private fatal(error: Error): void {
    if (this.fatalError !== undefined) return;
    this.fatalError = error;
    const onFatal = this.options.onFatal;
    if (onFatal === undefined) {
      this.options.log.error(error.message);
      return;
    }
    try {
      onFatal(error);
    } catch (err) {
      this.options.log.error('the fatal-error handler threw', { error: (err as Error).message });
    }
  }
}
