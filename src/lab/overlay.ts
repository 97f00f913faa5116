// A vxtun overlay on a lab: the network config in a store, one agent per node (a real `vxtun agent` process in the
// node's namespace), and optionally a node whose overlay is the kernel's VXLAN device programmed as flanneld would,
// with its lease written into the same store. Used by the network tests, the benchmarks and `vxtun lab`.
import { type ChildProcess, spawn } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AgentStatus } from '../control/agent';
import { DEFAULT_PREFIX, formatLeaseAttrs, parseLeaseAttrs, parseSubnetKey, subnetKey, subnetsPrefix } from '../control/lease';
import { type BackendOptions, type BgpEncap, formatNetworkConfig } from '../control/network-config';
import { fetchStatus } from '../control/status-server';
import { openStore } from '../store/open';
import type { Store } from '../store/store';
import { type Cidr, type IPv4, formatCidr, formatIPv4, formatMac, parseCidr, parseIPv4, parseMac } from '../wire/address';
import { type Cidr6, formatCidr6, formatIPv6, parseCidr6, parseIPv6 } from '../wire/address6';
import { readFlannelEnv } from './cni';
import type { Pod } from './pods';
import {
  addKernelPeer, addKernelPeer6, createKernelVtep, createKernelVtep6, disableTxChecksumOffload, kernelVtep6Name, kernelVtepName,
} from './kernel-vxlan';
import { type EtcdServer, startEtcd } from './etcd-server';
import { commandArgv, run } from './shell';
import { RelayedStore } from './store-relay';
import { type Lab, type LabNode, labWorkDir, processStartTime } from './topology';

/** The compiled CLI; this file sits two levels below the package root in both src/ and dist/. */
export const CLI_PATH = join(__dirname, '..', '..', 'dist', 'cli', 'main.js');

/**
 * IPv6 in the overlay (issue 12), configured through `vxtun init --ipv6-network CIDR [--ipv6-subnet-len N]
 * [--ipv6-only]` and `vxtun agent --public-ipv6 IP` (flannel's EnableIPv6 / IPv6Network / IPv6SubnetLen / EnableIPv4,
 * and PublicIPv6). The lab needs an IPv6 underlay (createLab's underlay6) for `underlay`.
 */
export interface OverlayIPv6Options {
  /** The cluster's IPv6 network; default DEFAULT_IPV6_NETWORK. */
  network?: string;
  /** Each node's IPv6 subnet length (flannel's default 64 when left out). */
  subnetLen?: number;
  /**
   * IPv6-only: EnableIPv4 false (pods and TUNs get no IPv4 address). Agents get `--public-ipv6` and no `--public-ip`:
   * the IPv6 underlay is the only one the overlay uses (as flannel's flannel-v6.<VNI> alone).
   */
  only?: boolean;
  /** Agents get `--public-ipv6 <node's underlayIp6>`: VXLAN over the IPv6 underlay (else IPv6 inner over IPv4). */
  underlay?: boolean;
}

/** The lab's IPv6 pod network (fd00::/8, unique local: only inside the lab's namespaces). */
export const DEFAULT_IPV6_NETWORK = 'fd00:17::/56';

export interface OverlayOptions {
  backend: 'vxlan' | 'ipip' | 'host-gw' | 'bgp';
  /** Dual-stack or IPv6-only overlay (vxlan only: the backend issue 12 carries IPv6 with). */
  ipv6?: OverlayIPv6Options;
  /** bgp: Calico's BGP mode, each agent running its own bird2 (docs/bgp.md); defaults as `vxtun init`'s. */
  bgp?: { as?: number; encap?: BgpEncap; routeReflectors?: string[]; gracefulRestart?: number; bfd?: boolean };
  /** vxlan / ipip: route directly to nodes on our own L2 subnet (flannel DirectRouting, Calico CrossSubnet). */
  directRouting?: boolean;
  network?: string;
  vni?: number;
  port?: number;
  /**
   * 'file' (default): an embedded store in the overlay's work dir. 'etcd': a real etcd on the lab's underlay, run in
   * the hub namespace on the hub bridge's address (the lab's control node, 192.0.2.2), where agents reach it as
   * etcd://192.0.2.2:2379; close() stops it.
   */
  store?: 'file' | 'etcd';
  /** Store URL (file: only); default: a fresh embedded store in the work dir (removed by close()). */
  storeUrl?: string;
  leaseTtlSeconds?: number;
  /** How long startAgent waits for an agent to answer (default 15 s; a 50-node lab on 2 cores needs more). */
  agentStartTimeoutMs?: number;
  /**
   * Agents outlive this process (`vxtun lab up` on a persistent lab): they run detached, in their own session, with
   * logs, store and status sockets in the lab's work dir (/run/vxtun/labs/<name>/), which destroyLab removes.
   */
  persistent?: boolean;
}

export interface AgentHandle {
  node: LabNode;
  process: ChildProcess;
  logFile: string;
  statusSocket: string;
}

/** The hub bridge's host number on the underlay when the lab runs etcd: the control node, 192.0.2.2. */
export const CONTROL_HOST = 2;

export class Overlay {
  readonly agents = new Map<string, AgentHandle>();
  storeUrl: string;
  /** The lab's etcd (store 'etcd'), in the hub namespace: stop and restart it to make an outage. */
  etcd: EtcdServer | undefined;
  readonly network: string;
  /** The cluster IPv6 network when the overlay carries IPv6. */
  readonly network6: string | undefined;
  readonly vni: number;
  readonly port: number;
  readonly workDir: string;

  private constructor(
    readonly lab: Lab,
    readonly options: OverlayOptions,
  ) {
    if (options.persistent) {
      this.workDir = labWorkDir(lab.name);
      mkdirSync(this.workDir, { recursive: true });
    } else {
      this.workDir = mkdtempSync(join(tmpdir(), `${lab.name}-`));
    }
    this.storeUrl = options.storeUrl ?? `file:${join(this.workDir, 'store')}`;
    this.network = options.network ?? '10.17.0.0/16';
    this.network6 = options.ipv6 === undefined ? undefined : formatCidr6(parseCidr6(options.ipv6.network ?? DEFAULT_IPV6_NETWORK));
    this.vni = options.vni ?? 1;
    this.port = options.port ?? 4789;
  }

  /** Writes the network config; start agents with startAgent(). */
  static async create(lab: Lab, options: OverlayOptions): Promise<Overlay> {
    if (!existsSync(CLI_PATH)) throw new Error(`${CLI_PATH} is missing: run "npm run build" first`);
    if (options.store === 'etcd' && options.storeUrl !== undefined) throw new Error('give either store: "etcd" or a storeUrl, not both');
    if (options.ipv6 !== undefined && options.backend !== 'vxlan') throw new Error(`an IPv6 overlay needs the vxlan backend, not ${options.backend}`);
    if ((options.ipv6?.underlay || options.ipv6?.only) && lab.nodes.some((n) => n.underlayIp6 === undefined)) {
      throw new Error('ipv6.underlay and ipv6.only need a lab with an IPv6 underlay (createLab with underlay6)');
    }
    const overlay = new Overlay(lab, options);
    if (options.store === 'etcd') {
      try {
        await overlay.startControlNode();
      } catch (error) {
        await overlay.close();
        throw error;
      }
    }
    const directRouting = options.directRouting ?? false;
    const bgp = options.bgp ?? {};
    const backend: BackendOptions =
      options.backend === 'vxlan'
        ? { type: 'vxlan' as const, vni: overlay.vni, port: overlay.port, directRouting }
        : options.backend === 'ipip'
          ? { type: 'ipip' as const, directRouting }
          : options.backend === 'bgp'
            ? { type: 'bgp' as const, ...bgp, routeReflectors: bgp.routeReflectors?.map(parseIPv4) }
            : { type: 'host-gw' as const };
    if (options.ipv6 !== undefined) {
      await overlay.initIPv6().catch(async (error: unknown) => {
        await overlay.close();
        throw error;
      });
      return overlay;
    }
    await overlay.withStore((store) =>
      store.put(`${DEFAULT_PREFIX}/config`, formatNetworkConfig({ network: parseCidr(overlay.network), subnetMax: labSubnetMax(overlay.network), backend })),
    );
    return overlay;
  }

  /**
   * The network config of an IPv6 overlay, written by `vxtun init` itself (in the hub namespace when the store is the
   * lab's etcd), so that the lab exercises the flags users type: --ipv6-network, --ipv6-subnet-len, --ipv6-only.
   */
  private async initIPv6(): Promise<void> {
    const v6 = this.options.ipv6!;
    const args = [CLI_PATH, 'init', '--store', this.storeUrl, '--backend', 'vxlan', '--vni', String(this.vni), '--port', String(this.port)];
    // Not for IPv6-only: an IPv6-only network has no IPv4 network (`vxtun init` refuses --network with --ipv6-only).
    if (!v6.only) {
      args.push('--network', this.network);
      const subnetMax = labSubnetMax(this.network);
      if (subnetMax !== undefined) args.push('--subnet-max', formatIPv4(subnetMax));
    }
    args.push('--ipv6-network', this.network6!);
    if (v6.subnetLen !== undefined) args.push('--ipv6-subnet-len', String(v6.subnetLen));
    if (v6.only) args.push('--ipv6-only');
    await run(process.execPath, args, this.etcd !== undefined ? { netns: this.lab.hubNetns } : {});
  }

  /** The address etcd listens on when the lab has one: the hub bridge's. */
  get controlAddress(): string {
    return formatIPv4(parseIPv4(this.lab.underlay) + CONTROL_HOST);
  }

  /** Gives the hub bridge the control node's address and starts etcd there, inside the hub namespace. */
  private async startControlNode(): Promise<void> {
    await run('ip', ['-n', this.lab.hubNetns, 'addr', 'add', `${this.controlAddress}/${this.lab.prefixLength}`, 'dev', 'br0']);
    this.etcd = await startEtcd({
      netns: this.lab.hubNetns,
      host: this.controlAddress,
      dataDir: join(this.workDir, 'etcd'),
      // `lab up` exits and leaves the lab running; etcd lives in the hub, so removing the lab kills it.
      detached: this.options.persistent ?? false,
      logFile: join(this.workDir, 'etcd.log'),
    });
    this.storeUrl = this.etcd.url;
  }

  /**
   * The overlay's store, opened for `use` and closed after. etcd lives on the lab's underlay, which our process cannot
   * reach: its operations go through a relay process in the hub namespace (get/put/delete/list; no watches).
   */
  async withStore<T>(use: (store: Store) => Promise<T>): Promise<T> {
    const store = this.etcd !== undefined ? new RelayedStore(this.lab.hubNetns, this.storeUrl) : openStore(this.storeUrl);
    try {
      return await use(store);
    } finally {
      await store.close();
    }
  }

  /** Starts `vxtun agent` in the node and waits until it holds a lease and answers on its status socket. */
  /** `nodeArgs` go to node itself, before the script (e.g. --cpu-prof for a profile of the agent). */
  async startAgent(node: LabNode, extraArgs: string[] = [], publicIp = node.underlayIp, nodeArgs: string[] = []): Promise<AgentHandle> {
    // In the work dir, which close() and destroyLab remove: a SIGKILLed agent leaves no socket behind.
    const statusSocket = join(this.workDir, `${node.name}.sock`);
    const logFile = join(this.workDir, `${node.name}.log`);
    rmSync(statusSocket, { force: true });
    const args = [
      ...nodeArgs,
      CLI_PATH, 'agent',
      '--store', this.storeUrl,
      // IPv6-only: the IPv6 underlay address is the node's only one (`vxtun agent` needs no --public-ip there).
      ...(this.options.ipv6?.only ? [] : ['--public-ip', publicIp]),
      // All lab nodes share this host's name; each needs its own identity (lease and VTEP MAC follow it).
      '--node-name', node.netns,
      '--subnet-file', join(this.workDir, `${node.name}-subnet.env`),
      '--status-socket', statusSocket,
      ...((this.options.ipv6?.underlay || this.options.ipv6?.only) && node.underlayIp6 !== undefined ? ['--public-ipv6', node.underlayIp6] : []),
      ...(this.options.backend === 'bgp' ? ['--bird-dir', this.birdDir(node)] : []),
      ...(this.options.leaseTtlSeconds !== undefined ? ['--lease-ttl', String(this.options.leaseTtlSeconds)] : []),
      ...extraArgs,
    ];
    const child = this.options.persistent ? spawnDetached(node, process.execPath, args, logFile) : this.lab.spawn(node, process.execPath, args, { logFile });
    const handle: AgentHandle = { node, process: child, logFile, statusSocket };
    this.agents.set(node.name, handle);
    await this.waitFor(`agent in ${node.name} to start`, this.options.agentStartTimeoutMs ?? 15_000, async () => {
      if (child.exitCode !== null) throw new Error(`agent in ${node.name} exited with ${child.exitCode}:\n${this.log(node)}`);
      return (await this.status(node).catch(() => undefined)) !== undefined;
    });
    return handle;
  }

  /** Stops a node's agent with a signal (SIGKILL to simulate a crash) and waits for it to exit. */
  async stopAgent(node: LabNode, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    const handle = this.agents.get(node.name);
    if (handle === undefined) return;
    this.agents.delete(node.name);
    if (handle.process.exitCode !== null || handle.process.signalCode !== null) return;
    const exited = new Promise((resolve) => handle.process.once('exit', resolve));
    handle.process.ref(); // a detached agent is unref'd: keep us alive until it has exited
    handle.process.kill(signal);
    await exited;
  }

  /** bgp: where the agent in `node` keeps its BIRD's config, control socket (bird.ctl) and pid file. */
  birdDir(node: LabNode): string {
    return join(this.workDir, `${node.name}-bird`);
  }

  status(node: LabNode): Promise<AgentStatus> {
    const handle = this.agents.get(node.name);
    if (handle === undefined) throw new Error(`no agent runs in ${node.name}`);
    return fetchStatus(handle.statusSocket, 2000) as Promise<AgentStatus>;
  }

  log(node: LabNode): string {
    const file = join(this.workDir, `${node.name}.log`);
    return existsSync(file) ? readFileSync(file, 'utf8') : '';
  }

  /** Waits until the agent in `node` routes to exactly `count` other nodes. */
  async waitForRoutes(node: LabNode, count: number, timeoutMs = 10_000): Promise<AgentStatus> {
    let last: AgentStatus | undefined;
    await this.waitFor(`${node.name} to have ${count} routes`, timeoutMs, async () => {
      last = await this.status(node);
      return last.routes.length === count;
    });
    return last!;
  }

  /**
   * Waits until the agent in `node` knows every other node's subnets: each IPv4 subnet (unless IPv6-only) and each
   * IPv6 subnet address appears in its status. For IPv6 overlays, where the status layout of IPv6 routes is the
   * control plane's to choose; plain IPv4 overlays use waitForRoutes.
   */
  async waitForSubnets(node: LabNode, others: ReadonlyArray<{ subnet?: Cidr; subnet6?: Cidr6 }>, timeoutMs = 15_000): Promise<void> {
    const wanted = others.flatMap((o) => [
      ...(o.subnet !== undefined ? [formatCidr(o.subnet)] : []),
      ...(o.subnet6 !== undefined ? [formatIPv6(o.subnet6.address)] : []),
    ]);
    let missing: string[] = wanted;
    try {
      await this.waitFor(`${node.name} to route to every other node's subnets`, timeoutMs, async () => {
        const text = JSON.stringify(await this.status(node));
        missing = wanted.filter((w) => !containsAddress(text, w));
        return missing.length === 0;
      });
    } catch (error) {
      throw new Error(`${(error as Error).message} (missing: ${missing.join(', ')})`);
    }
  }

  /** The subnet.env the agent in `node` writes (the `--subnet-file` startAgent passes): what the CNI plugins read. */
  subnetFile(node: LabNode): string {
    return join(this.workDir, `${node.name}-subnet.env`);
  }

  /** The lease subnet the agent in `node` holds. */
  async subnetOf(node: LabNode): Promise<Cidr> {
    return parseCidr((await this.status(node)).lease.subnet);
  }

  /** The IPv6 subnet the agent in `node` holds, from the FLANNEL_IPV6_SUBNET of its subnet.env (undefined: none). */
  async subnet6Of(node: LabNode): Promise<Cidr6 | undefined> {
    return (await readFlannelEnv(this.subnetFile(node)))?.ipv6Subnet;
  }

  /**
   * A dual-stack flannel kernel node (`addKernelNode` plus flannel's IPv6 half): `flannel.<vni>` on `subnet`,
   * `flannel-v6.<vni>` on `subnet6` with the node's IPv6 underlay address as `local`, the lease written as a
   * dual-stack flanneld writes it (key `<v4>-<len>&<v6>-<len>`, PublicIPv6 and BackendV6Data beside PublicIP and
   * BackendData), then one neighbor/FDB/route per existing lease for each family it has.
   */
  async addKernelNode6(node: LabNode, subnet: string, subnet6: string, vtepMac = '0e:00:00:00:fe:01', vtepMac6 = '0e:00:00:00:fe:61'): Promise<void> {
    if (node.underlayIp6 === undefined) throw new Error(`kernel node ${node.name} needs an IPv6 underlay address (createLab with underlay6)`);
    const cidr = parseCidr(subnet);
    const cidr6 = parseCidr6(subnet6);
    await createKernelVtep(this.lab, node, { vni: this.vni, port: this.port, vtepMac, address: formatIPv4(cidr.address) });
    await disableTxChecksumOffload(this.lab, node, kernelVtepName(this.vni));
    await createKernelVtep6(this.lab, node, { vni: this.vni, port: this.port, vtepMac: vtepMac6, address: formatCidr6(cidr6) });
    await disableTxChecksumOffload(this.lab, node, kernelVtep6Name(this.vni));
    const value = JSON.parse(formatLeaseAttrs({
      publicIp: parseIPv4(node.underlayIp), backendType: 'vxlan', backendData: { vni: this.vni, vtepMac: parseMac(vtepMac) },
    })) as Record<string, unknown>;
    value.PublicIPv6 = node.underlayIp6;
    value.BackendV6Data = { VNI: this.vni, VtepMAC: formatMac(parseMac(vtepMac6)) };
    const key = `${subnetsPrefix(DEFAULT_PREFIX)}${dualStackKey(cidr, cidr6)}`;
    const peers = await this.withStore(async (store) => {
      await store.put(key, JSON.stringify(value), { ttlSeconds: 3600 });
      return (await store.list(subnetsPrefix(DEFAULT_PREFIX))).kvs;
    });
    for (const kv of peers) {
      if (kv.key === key) continue;
      const lease = parseFlannelLease(kv.key, kv.value);
      if (lease === undefined) continue;
      if (lease.subnet !== undefined && lease.publicIp !== undefined && lease.vtepMac !== undefined) {
        await addKernelPeer(this.lab, node, { subnet: formatCidr(lease.subnet), vtepMac: lease.vtepMac, publicIp: lease.publicIp, vni: this.vni });
      }
      if (lease.subnet6 !== undefined && lease.publicIpv6 !== undefined && lease.vtepMac6 !== undefined) {
        await addKernelPeer6(this.lab, node, { subnet: formatCidr6(lease.subnet6), vtepMac: lease.vtepMac6, publicIpv6: lease.publicIpv6, vni: this.vni });
      }
    }
  }

  /**
   * Makes `node` a flannel-style kernel VXLAN node: a `flannel.<vni>` device on `subnet`, its lease written into the
   * store as flanneld writes it, and one neighbor/FDB/route per vxtun lease already in the store.
   */
  async addKernelNode(node: LabNode, subnet: string, vtepMac = '0e:00:00:00:fe:01'): Promise<void> {
    const cidr = parseCidr(subnet);
    await createKernelVtep(this.lab, node, { vni: this.vni, port: this.port, vtepMac, address: formatIPv4(cidr.address) });
    // The kernel would otherwise leave inner TCP checksums partial for user-space receivers (FACTS.md, field problems).
    await disableTxChecksumOffload(this.lab, node, kernelVtepName(this.vni));
    const attrs = formatLeaseAttrs({ publicIp: parseIPv4(node.underlayIp), backendType: 'vxlan', backendData: { vni: this.vni, vtepMac: parseMac(vtepMac) } });
    const peers = await this.withStore(async (store) => {
      await store.put(subnetKey(DEFAULT_PREFIX, cidr), attrs, { ttlSeconds: 3600 });
      return (await store.list(subnetsPrefix(DEFAULT_PREFIX))).kvs;
    });
    for (const kv of peers) {
      const peerSubnet = parseSubnetKey(kv.key);
      if (peerSubnet === undefined || formatCidr(peerSubnet) === formatCidr(cidr)) continue;
      const peer = parseLeaseAttrs(kv.value);
      await addKernelPeer(this.lab, node, {
        subnet: formatCidr(peerSubnet),
        vtepMac: formatMac(peer.backendData!.vtepMac!),
        publicIp: formatIPv4(peer.publicIp),
        vni: this.vni,
      });
    }
  }

  /** Stops every agent and the lab's etcd, and removes the overlay's working files (the lab itself is the caller's). */
  async close(): Promise<void> {
    for (const handle of [...this.agents.values()]) await this.stopAgent(handle.node).catch(() => {});
    await this.etcd?.stop().catch(() => {});
    this.etcd = undefined;
    rmSync(this.workDir, { recursive: true, force: true });
  }

  private async waitFor(what: string, timeoutMs: number, check: () => Promise<boolean>): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (await check()) return;
      if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
}

/** `text` holds `what` not followed by another address character (fd00:17:0:1:: is not fd00:17:0:1::5). */
function containsAddress(text: string, what: string): boolean {
  for (let at = text.indexOf(what); at >= 0; at = text.indexOf(what, at + 1)) {
    if (!/[0-9a-f:.]/i.test(text[at + what.length] ?? '')) return true;
  }
  return false;
}

/** flannel's dual-stack lease key (pkg/subnet MakeSubnetKey): `10.17.250.0-24&fd00:17:0:fa::-64`. */
export function dualStackKey(subnet: Cidr, subnet6: Cidr6): string {
  return `${formatIPv4(subnet.address)}-${subnet.prefixLength}&${formatIPv6(subnet6.address)}-${subnet6.prefixLength}`;
}

/** What the lab's kernel node needs from a lease in flannel's layout, either family or both; undefined if unreadable. */
export interface FlannelLeaseView {
  subnet?: Cidr;
  subnet6?: Cidr6;
  publicIp?: string;
  publicIpv6?: string;
  vtepMac?: string;
  vtepMac6?: string;
}

/**
 * Reads a lease key (`<v4>-<len>`, `<v4>-<len>&<v6>-<len>`, or `<v6>-<len>` for IPv6-only) and its JSON value as
 * flanneld writes them (PublicIP, PublicIPv6, BackendData.VtepMAC, BackendV6Data.VtepMAC), without the agent's
 * validation: the lab only programs kernel entries from it.
 */
export function parseFlannelLease(key: string, value: string): FlannelLeaseView | undefined {
  const name = key.slice(key.lastIndexOf('/') + 1);
  const view: FlannelLeaseView = {};
  try {
    for (const part of name.split('&')) {
      const dash = part.lastIndexOf('-');
      if (dash <= 0) return undefined;
      const cidr = `${part.slice(0, dash)}/${part.slice(dash + 1)}`;
      if (part.includes(':')) view.subnet6 = parseCidr6(cidr);
      else view.subnet = parseCidr(cidr);
    }
    const attrs = JSON.parse(value) as {
      PublicIP?: unknown; PublicIPv6?: unknown; BackendData?: { VtepMAC?: unknown } | null; BackendV6Data?: { VtepMAC?: unknown } | null;
    };
    if (typeof attrs.PublicIP === 'string') view.publicIp = formatIPv4(parseIPv4(attrs.PublicIP));
    if (typeof attrs.PublicIPv6 === 'string') view.publicIpv6 = formatIPv6(parseIPv6(attrs.PublicIPv6));
    if (typeof attrs.BackendData?.VtepMAC === 'string') view.vtepMac = formatMac(parseMac(attrs.BackendData.VtepMAC));
    if (typeof attrs.BackendV6Data?.VtepMAC === 'string') view.vtepMac6 = formatMac(parseMac(attrs.BackendV6Data.VtepMAC));
  } catch {
    return undefined;
  }
  return view;
}

/** Starts a process in `node` that survives us: its own session (no terminal signals), logs to a file, unref'd. */
function spawnDetached(node: LabNode, cmd: string, args: readonly string[], logFile: string): ChildProcess {
  const [file, argv] = commandArgv(cmd, args, node.netns);
  const logFd = openSync(logFile, 'a');
  try {
    const child = spawn(file, argv, { stdio: ['ignore', logFd, logFd], detached: true });
    child.unref();
    return child;
  } finally {
    closeSync(logFd); // the child holds its own copy
  }
}

// ---- a persistent lab's record, for the commands that come after `vxtun lab up` -----------------------------------

export interface LabRecordNode {
  name: string;
  netns: string;
  underlayIp: string;
  /** 'vxtun': a detached `vxtun agent`; 'kernel': the kernel's VXLAN device, as flannel programs it. */
  kind: 'vxtun' | 'kernel';
  subnet: string;
  /** The TUN (vxtun) or VTEP (kernel) address: the subnet's .0, as flannel gives its device. */
  tunAddress: string;
  /** The first pod's address ('' without pods). */
  pod: string;
  /** IPv6 labs: the node's IPv6 underlay address, IPv6 subnet and the TUN's (or flannel-v6 device's) IPv6 address. */
  underlayIp6?: string;
  subnet6?: string;
  tunAddress6?: string;
  /** The pods attached by the CNI plugins (`lab up --pods N`), for `lab exec`, the table and `lab down`'s CNI DEL. */
  pods?: Pod[];
  pid?: number;
  /** /proc start time of `pid`, so that a reused pid is never signalled. */
  pidStartTime?: string | null;
  logFile?: string;
  statusSocket?: string;
}

export interface LabRecord {
  name: string;
  backend: 'vxlan' | 'ipip' | 'host-gw' | 'bgp';
  /** bgp: the encapsulation (none, ipip, ipip-crosssubnet). */
  bgpEncap?: BgpEncap;
  network: string;
  vni: number;
  port: number;
  storeUrl: string;
  /** False when the agents run with --no-ip-masq (the CNI bridge plugin NATs pod-to-pod traffic); absent: true. */
  ipMasq?: boolean;
  /** IPv6 labs (`lab up --ipv6`, `--ipv6-only`, `--ipv6-underlay`): the IPv6 network and how it is carried. */
  ipv6?: { network: string; only: boolean; underlay: boolean };
  createdAt: string;
  nodes: LabRecordNode[];
}

export function labRecordPath(labName: string): string {
  return join(labWorkDir(labName), 'lab.json');
}

export function writeLabRecord(record: LabRecord): void {
  const path = labRecordPath(record.name);
  mkdirSync(labWorkDir(record.name), { recursive: true });
  writeFileSync(`${path}.tmp`, `${JSON.stringify(record, null, 2)}\n`);
  renameSync(`${path}.tmp`, path);
}

export function readLabRecord(labName: string): LabRecord | undefined {
  try {
    return JSON.parse(readFileSync(labRecordPath(labName), 'utf8')) as LabRecord;
  } catch {
    return undefined;
  }
}

/** A handle's pid and start time, for the record. */
export function agentIdentity(handle: AgentHandle): { pid?: number; pidStartTime: string | null } {
  const pid = handle.process.pid;
  return { pid, pidStartTime: pid === undefined ? null : processStartTime(pid) };
}

/**
 * Asks the recorded agents to stop (SIGTERM, so each releases its lease and TUN as on any stop) and waits up to
 * `graceMs`; returns how many were still running. Whatever remains is killed with the lab's namespaces.
 */
export async function stopRecordedAgents(record: LabRecord, graceMs = 3_000): Promise<number> {
  const running = record.nodes.filter(isRecordedAgentAlive);
  for (const node of running) {
    try {
      process.kill(node.pid!, 'SIGTERM');
    } catch {
      // already gone
    }
  }
  const deadline = Date.now() + graceMs;
  // Until each is reaped, not only exited: whoever checks next with kill(pid, 0) must not see it (zombies answer it).
  while (Date.now() < deadline && running.some((n) => isSameProcess(n.pid!, n.pidStartTime ?? null))) {
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return running.length;
}

/** The process is still there, reaped or not (a zombie is, and still answers kill(pid, 0)). */
function isSameProcess(pid: number, startTime: string | null): boolean {
  const now = processStartTime(pid);
  return now !== null && (startTime === null || now === startTime);
}

/**
 * True while a node's recorded agent runs: its pid is alive (not a zombie, which a container's pid 1 may never
 * reap), started when recorded, and is a `vxtun agent` (its command line says so), not another process given the pid.
 */
export function isRecordedAgentAlive(node: LabRecordNode): boolean {
  if (node.kind !== 'vxtun' || node.pid === undefined || !isSameProcess(node.pid, node.pidStartTime ?? null) || isZombie(node.pid)) return false;
  try {
    const argv = readFileSync(`/proc/${node.pid}/cmdline`, 'utf8').split('\0');
    return argv.includes('agent') && argv.some((arg) => arg.endsWith(join('cli', 'main.js')));
  } catch {
    return false; // gone since
  }
}

function isZombie(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return /^[ZX]/.test(stat.slice(stat.lastIndexOf(')') + 2));
  } catch {
    return true;
  }
}

/**
 * The highest subnet the lab's agents may lease: in the default /16 with /24 leases, subnets 200-255 are never handed
 * out (flannel's SubnetMax), so that what tests and users add by hand there (kernel peers at .250, stray or forged
 * leases, an address no lease covers) never collides with a lease an agent chose at random.
 */
export function labSubnetMax(network: string): IPv4 | undefined {
  const cidr = parseCidr(network);
  return cidr.prefixLength === 16 ? cidr.address + 199 * 256 : undefined;
}
