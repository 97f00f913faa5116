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
import { type Cidr, formatCidr, formatIPv4, formatMac, parseCidr, parseIPv4, parseMac } from '../wire/address';
import type { Pod } from './pods';
import { addKernelPeer, createKernelVtep, disableTxChecksumOffload, kernelVtepName } from './kernel-vxlan';
import { type EtcdServer, startEtcd } from './etcd-server';
import { commandArgv, run } from './shell';
import { RelayedStore } from './store-relay';
import { type Lab, type LabNode, labWorkDir, processStartTime } from './topology';

/** The compiled CLI; this file sits two levels below the package root in both src/ and dist/. */
export const CLI_PATH = join(__dirname, '..', '..', 'dist', 'cli', 'main.js');

export interface OverlayOptions {
  backend: 'vxlan' | 'ipip' | 'host-gw' | 'bgp';
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
    this.vni = options.vni ?? 1;
    this.port = options.port ?? 4789;
  }

  /** Writes the network config; start agents with startAgent(). */
  static async create(lab: Lab, options: OverlayOptions): Promise<Overlay> {
    if (!existsSync(CLI_PATH)) throw new Error(`${CLI_PATH} is missing: run "npm run build" first`);
    if (options.store === 'etcd' && options.storeUrl !== undefined) throw new Error('give either store: "etcd" or a storeUrl, not both');
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
    await overlay.withStore((store) => store.put(`${DEFAULT_PREFIX}/config`, formatNetworkConfig({ network: parseCidr(overlay.network), backend })));
    return overlay;
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
      '--public-ip', publicIp,
      // All lab nodes share this host's name; each needs its own identity (lease and VTEP MAC follow it).
      '--node-name', node.netns,
      '--subnet-file', join(this.workDir, `${node.name}-subnet.env`),
      '--status-socket', statusSocket,
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

  /** The subnet.env the agent in `node` writes (the `--subnet-file` startAgent passes): what the CNI plugins read. */
  subnetFile(node: LabNode): string {
    return join(this.workDir, `${node.name}-subnet.env`);
  }

  /** The lease subnet the agent in `node` holds. */
  async subnetOf(node: LabNode): Promise<Cidr> {
    return parseCidr((await this.status(node)).lease.subnet);
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
