// The lab: N "nodes" as network namespaces joined by an underlay (a Linux bridge in a hub namespace).
//
//   <name>-hub:  br0 (up) with ports n1..nN            (no addresses: a plain L2 switch)
//   <name>-n<i>: eth0 = 192.0.2.<10+i>/24, lo up        (the other end of port n<i>)
//                with `underlay6`: also eth0 = 2001:db8:1::<10+i>/64 (no DAD), IPv6 forwarding on
//
// Nothing is made in the root namespace: every veth pair is created inside the hub and one end moved into its node,
// so a crashed test leaves only namespaces behind, all named `vxt-...`, which destroyStaleLabs and scripts/sweep.sh
// remove. A state file /run/vxtun/labs/<name>.json, written before anything is created, records what a lab owns.

import { spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { formatIPv4, parseCidr } from '../wire/address';
import { fitNeighborTable } from './neighbor-table';
import { run, spawnIn, type RunOptions, type RunResult, type SpawnOptions } from './shell';
import { formatIPv6, parseCidr6 } from '../wire/address6';

export const LAB_PREFIX = 'vxt-';
export const LAB_STATE_DIR = '/run/vxtun/labs';
export const DEFAULT_UNDERLAY = '192.0.2.0/24';
/** The IPv6 underlay of `underlay6: true` labs (RFC 3849 documentation range); node i gets ::<10+i> (n1: ::11). */
export const DEFAULT_UNDERLAY6 = '2001:db8:1::/64';
const HUB_BRIDGE = 'br0';
const FIRST_HOST = 10; // node i gets underlay host number 10 + i
const STOP_GRACE_MS = 1_500; // between SIGTERM and SIGKILL for processes the lab started

export interface LabOptions {
  /** Lab name, also the prefix of its namespaces; must start with `vxt-` (e.g. 'vxt-t123'). */
  name: string;
  nodes: number;
  /** Underlay subnet; node i gets host 10 + i. Default 192.0.2.0/24. */
  underlay?: string;
  /** MTU of the underlay links; default 1500. */
  mtu?: number;
  /**
   * A second, IPv6 underlay on the same links (issue 12): true for DEFAULT_UNDERLAY6 or an IPv6 CIDR; node i gets host
   * 10 + i. Node namespaces then have IPv6 forwarding on and duplicate address detection off (accept_dad=0), so that
   * addresses made later (TUNs, cni0, pods' veths) are usable at once instead of staying "tentative" for a second or two.
   */
  underlay6?: boolean | string;
  /**
   * Outlives this process (`vxtun lab up`): no exit hooks remove it, destroyStaleLabs leaves it alone while its
   * namespaces exist, and only destroyLab(name) removes it. Processes it runs are the caller's to detach.
   */
  persistent?: boolean;
  /** Where the lab says what it changed on the host (default: stderr). */
  log?: (line: string) => void;
}

/** Anything commands can run in: a node, a pod, the outside host (only the namespace matters). */
export interface InNamespace {
  readonly netns: string;
}

export interface LabNode {
  /** 1-based. */
  index: number;
  /** Short name inside the lab: 'n1', 'n2', ... */
  name: string;
  netns: string;
  underlayIp: string;
  underlayDev: 'eth0';
  /** The node's IPv6 underlay address (labs made with underlay6), e.g. '2001:db8:1::11'. */
  underlayIp6?: string;
}

/** What a lab owns, as recorded on disk so that another process can remove it after a crash. */
export interface LabState {
  name: string;
  namespaces: string[];
  ownerPid: number;
  /** Start time of the owner process (/proc/PID/stat field 22), so a reused pid is not taken for the owner. */
  ownerStartTime: string | null;
  createdAt: string;
  /** Made to outlive its owner (`vxtun lab up`): not stale when the owner is gone. */
  persistent?: boolean;
}

export interface Lab {
  readonly name: string;
  readonly hubNetns: string;
  readonly underlay: string;
  readonly prefixLength: number;
  readonly mtu: number;
  /** The IPv6 underlay's network address and prefix length ('2001:db8:1::', 64), when the lab has one. */
  readonly underlay6?: string;
  readonly prefixLength6?: number;
  readonly nodes: readonly LabNode[];
  /** Node by 1-based index. */
  node(index: number): LabNode;
  exec(node: InNamespace, cmd: string, args: readonly string[], options?: Omit<RunOptions, 'netns'>): Promise<RunResult>;
  /** Starts a process in a node (or a pod); destroy() stops it. */
  spawn(node: InNamespace, cmd: string, args: readonly string[], options?: SpawnOptions): ChildProcess;
  /**
   * Makes one more namespace the lab owns (a pod's, the outside host's), named `<lab>-<suffix>`: recorded in the
   * state file first, so that destroy(), destroyLab and destroyStaleLabs remove it like the nodes'. Its lo is up.
   */
  addNamespace(suffix: string): Promise<string>;
  /** Deletes a namespace made by addNamespace (killing what runs in it) and forgets it. Idempotent. */
  removeNamespace(netns: string): Promise<void>;
  /** Stops every process in the lab's namespaces and deletes them. Idempotent; never throws. */
  destroy(): Promise<void>;
}

export function hubNamespace(labName: string): string {
  return `${labName}-hub`;
}

export function nodeNamespace(labName: string, index: number): string {
  return `${labName}-n${index}`;
}

export function labStatePath(labName: string): string {
  return join(LAB_STATE_DIR, `${labName}.json`);
}

/** Files a lab's users keep beside it (agent logs, store, sockets); destroyLab removes the directory. */
export function labWorkDir(labName: string): string {
  return join(LAB_STATE_DIR, labName);
}

/** Throws unless `name` can name a lab (it goes into file names and `ip netns` arguments). */
export function checkLabName(name: string): void {
  // The name goes into file names and `ip netns` arguments: keep it to a safe alphabet.
  if (!name.startsWith(LAB_PREFIX) || !/^[a-z0-9][a-z0-9.-]*$/i.test(name) || name.length > 48) {
    throw new Error(`invalid lab name "${name}": must start with "${LAB_PREFIX}" and use letters, digits, '-' and '.'`);
  }
}

export async function createLab(options: LabOptions): Promise<Lab> {
  checkLabName(options.name);
  const underlay = parseCidr(options.underlay ?? DEFAULT_UNDERLAY);
  const mtu = options.mtu ?? 1500;
  const hostCount = 2 ** (32 - underlay.prefixLength);
  if (!Number.isInteger(options.nodes) || options.nodes < 1 || FIRST_HOST + options.nodes >= hostCount - 1) {
    throw new Error(`invalid node count ${options.nodes} for underlay ${options.underlay ?? DEFAULT_UNDERLAY}`);
  }
  if (!Number.isInteger(mtu) || mtu < 576 || mtu > 65535) throw new Error(`invalid underlay MTU ${mtu}`);
  const underlay6 = options.underlay6 === undefined || options.underlay6 === false
    ? undefined
    : parseCidr6(options.underlay6 === true ? DEFAULT_UNDERLAY6 : options.underlay6);
  if (underlay6 !== undefined && underlay6.prefixLength > 120) throw new Error(`IPv6 underlay ${formatIPv6(underlay6.address)}/${underlay6.prefixLength} is too small`);
  if (underlay6 !== undefined && mtu < 1280) throw new Error(`invalid underlay MTU ${mtu}: IPv6 needs at least 1280 (RFC 8200 section 5)`);

  const name = options.name;
  const nodes: LabNode[] = [];
  for (let index = 1; index <= options.nodes; index++) {
    nodes.push({
      index,
      name: `n${index}`,
      netns: nodeNamespace(name, index),
      underlayIp: formatIPv4(underlay.address + FIRST_HOST + index),
      underlayDev: 'eth0',
      // The IPv4 host number's digits read as hex (192.0.2.11 and 2001:db8:1::11), so the two are told apart at a glance.
      ...(underlay6 !== undefined ? { underlayIp6: formatIPv6(underlay6.address + BigInt(`0x${FIRST_HOST + index}`)) } : {}),
    });
  }
  const hub = hubNamespace(name);
  const state: LabState = {
    name,
    namespaces: [hub, ...nodes.map((n) => n.netns)],
    ownerPid: process.pid,
    ownerStartTime: processStartTime(process.pid),
    createdAt: new Date().toISOString(),
    ...(options.persistent ? { persistent: true } : {}),
  };

  const existing = await listNamespaces();
  const clash = state.namespaces.filter((ns) => existing.includes(ns));
  if (clash.length > 0) {
    throw new Error(`lab "${name}" already exists (namespaces ${clash.join(', ')}); remove it with destroyLab("${name}")`);
  }

  // One host-wide neighbor table serves every namespace: make room for a full mesh (neighbor-table.ts).
  const raised = fitNeighborTable(options.nodes + 1);
  if (raised !== undefined) (options.log ?? ((line) => process.stderr.write(`${line}\n`)))(raised);

  // Record first, create second: a crash halfway still leaves a record of everything that may exist.
  writeLabState(state);
  const lab = new LiveLab(state, nodes, formatIPv4(underlay.address), underlay.prefixLength, mtu,
    underlay6 === undefined ? undefined : formatIPv6(underlay6.address), underlay6?.prefixLength);
  if (!options.persistent) {
    liveLabs.add(lab);
    installExitHooks();
  }
  try {
    await run('ip', ['netns', 'add', hub]);
    await run('ip', ['-n', hub, 'link', 'set', 'lo', 'up']);
    await run('ip', ['-n', hub, 'link', 'add', HUB_BRIDGE, 'mtu', String(mtu), 'type', 'bridge']);
    await run('ip', ['-n', hub, 'link', 'set', HUB_BRIDGE, 'up']);
    for (const node of nodes) {
      await run('ip', ['netns', 'add', node.netns]);
      await run('ip', ['-n', node.netns, 'link', 'set', 'lo', 'up']);
      // Before any interface is made: 'default' is what new interfaces (eth0, TUNs, cni0, veths) inherit.
      if (underlay6 !== undefined) await enableIPv6(node.netns);
      const port = node.name;
      await run('ip', ['-n', hub, 'link', 'add', port, 'mtu', String(mtu), 'type', 'veth',
        'peer', 'name', node.underlayDev, 'mtu', String(mtu), 'netns', node.netns]);
      await run('ip', ['-n', hub, 'link', 'set', port, 'master', HUB_BRIDGE, 'up']);
      await run('ip', ['-n', node.netns, 'addr', 'add', `${node.underlayIp}/${underlay.prefixLength}`, 'dev', node.underlayDev]);
      if (node.underlayIp6 !== undefined) {
        await run('ip', ['-n', node.netns, 'addr', 'add', `${node.underlayIp6}/${underlay6!.prefixLength}`, 'dev', node.underlayDev, 'nodad']);
      }
      await run('ip', ['-n', node.netns, 'link', 'set', node.underlayDev, 'up']);
    }
  } catch (error) {
    await lab.destroy();
    throw error;
  }
  return lab;
}

/**
 * IPv6 in a node namespace: forwarding on (pods' traffic crosses the node), router advertisements still accepted
 * (accept_ra=2, as forwarding would otherwise turn them off; the lab sends none), and DAD off for every interface made
 * later (a tentative address cannot be bound: EADDRNOTAVAIL). Pods' namespaces get it without forwarding.
 */
export async function enableIPv6(netns: string, forwarding = true): Promise<void> {
  const settings = [
    'net.ipv6.conf.all.disable_ipv6=0', 'net.ipv6.conf.default.disable_ipv6=0',
    'net.ipv6.conf.all.accept_dad=0', 'net.ipv6.conf.default.accept_dad=0',
  ];
  if (forwarding) settings.push('net.ipv6.conf.all.forwarding=1', 'net.ipv6.conf.default.forwarding=1');
  await run('sysctl', ['-q', '-w', ...settings], { netns });
}

class LiveLab implements Lab {
  readonly name: string;
  readonly hubNetns: string;
  private readonly processes = new Set<ChildProcess>();
  private destroying: Promise<void> | undefined;

  constructor(
    private readonly state: LabState,
    readonly nodes: readonly LabNode[],
    readonly underlay: string,
    readonly prefixLength: number,
    readonly mtu: number,
    readonly underlay6?: string,
    readonly prefixLength6?: number,
  ) {
    this.name = state.name;
    this.hubNetns = hubNamespace(state.name);
  }

  node(index: number): LabNode {
    const node = this.nodes[index - 1];
    if (node === undefined) throw new Error(`lab ${this.name} has no node ${index} (it has ${this.nodes.length})`);
    return node;
  }

  exec(node: InNamespace, cmd: string, args: readonly string[], options: Omit<RunOptions, 'netns'> = {}): Promise<RunResult> {
    return run(cmd, args, { ...options, netns: node.netns });
  }

  async addNamespace(suffix: string): Promise<string> {
    if (this.destroying) throw new Error(`lab ${this.name} is destroyed`);
    if (!/^[a-z0-9][a-z0-9.-]*$/i.test(suffix)) throw new Error(`invalid namespace suffix "${suffix}"`);
    const netns = `${this.name}-${suffix}`;
    if (this.state.namespaces.includes(netns)) throw new Error(`lab ${this.name} already has namespace ${netns}`);
    this.state.namespaces.push(netns);
    writeLabState(this.state);
    await run('ip', ['netns', 'add', netns]);
    await run('ip', ['-n', netns, 'link', 'set', 'lo', 'up']);
    return netns;
  }

  async removeNamespace(netns: string): Promise<void> {
    if (!this.state.namespaces.includes(netns)) return;
    await removeNamespaces([netns]);
    this.state.namespaces.splice(this.state.namespaces.indexOf(netns), 1);
    if (!this.destroying) writeLabState(this.state);
  }

  spawn(node: InNamespace, cmd: string, args: readonly string[], options: SpawnOptions = {}): ChildProcess {
    if (this.destroying) throw new Error(`lab ${this.name} is destroyed`);
    const child = spawnIn(node.netns, cmd, args, options);
    this.processes.add(child);
    child.once('close', () => this.processes.delete(child));
    return child;
  }

  destroy(): Promise<void> {
    this.destroying ??= this.teardown();
    return this.destroying;
  }

  /** For the exit hook, where nothing asynchronous runs any more. */
  destroySync(): void {
    for (const child of this.processes) signalQuietly(child, 'SIGKILL');
    removeNamespacesSync(this.state.namespaces);
    removeLabState(this.name);
    liveLabs.delete(this);
  }

  private async teardown(): Promise<void> {
    try {
      await stopProcesses([...this.processes]);
      await removeNamespaces(this.state.namespaces);
      removeLabState(this.name);
      if (this.state.persistent) removeLabWorkDir(this.name);
    } catch {
      // Never throw from cleanup; whatever is left is still recorded and named vxt-, for destroyStaleLabs / sweep.sh.
    } finally {
      liveLabs.delete(this);
    }
  }
}

// ---- stopping processes and removing namespaces ------------------------------------------------------------------

function signalQuietly(child: ChildProcess, signal: NodeJS.Signals): void {
  try {
    child.kill(signal);
  } catch {
    // already gone
  }
}

function hasExited(child: ChildProcess): boolean {
  return child.exitCode !== null || child.signalCode !== null;
}

async function stopProcesses(children: ChildProcess[]): Promise<void> {
  const running = children.filter((child) => !hasExited(child));
  if (running.length === 0) return;
  const exited = Promise.all(running.map((child) => new Promise<void>((resolve) => {
    if (hasExited(child)) resolve();
    else child.once('exit', () => resolve());
  })));
  for (const child of running) signalQuietly(child, 'SIGTERM');
  let timer: NodeJS.Timeout | undefined;
  const graceOver = new Promise<'timeout'>((resolve) => { timer = setTimeout(() => resolve('timeout'), STOP_GRACE_MS); });
  const outcome = await Promise.race([exited.then(() => 'exited' as const), graceOver]);
  clearTimeout(timer);
  if (outcome === 'timeout') {
    for (const child of running) if (!hasExited(child)) signalQuietly(child, 'SIGKILL');
    await Promise.race([exited, delay(2_000)]);
  }
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function killPids(pids: number[]): void {
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
}

function parsePids(text: string): number[] {
  return text.split(/\s+/).filter((word) => /^\d+$/.test(word)).map(Number);
}

async function namespacePids(netns: string): Promise<number[]> {
  try {
    return parsePids((await run('ip', ['netns', 'pids', netns], { timeoutMs: 5_000 })).stdout);
  } catch {
    return []; // namespace already gone
  }
}

/** Kills whatever still runs in the namespaces (anyone's, not only ours), waits for it to die, deletes them. */
async function removeNamespaces(namespaces: readonly string[]): Promise<void> {
  const present = new Set(await listNamespaces());
  for (const netns of namespaces) {
    if (!present.has(netns)) continue;
    // A killed process leaves the namespace only once the kernel has torn it down: poll briefly.
    for (let attempt = 0; attempt < 40; attempt++) {
      const pids = await namespacePids(netns);
      if (pids.length === 0) break;
      killPids(pids);
      await delay(50);
    }
    try {
      await run('ip', ['netns', 'del', netns], { timeoutMs: 10_000 });
    } catch {
      // already gone, or busy: destroyStaleLabs will retry
    }
  }
}

function runSync(args: string[]): string {
  const result = spawnSync('ip', args, { encoding: 'utf8', timeout: 5_000 });
  return result.status === 0 ? result.stdout : '';
}

function removeNamespacesSync(namespaces: readonly string[]): void {
  const present = new Set(parseNamespaceList(runSync(['netns', 'list'])));
  for (const netns of namespaces) {
    if (!present.has(netns)) continue;
    for (let attempt = 0; attempt < 20; attempt++) {
      const pids = parsePids(runSync(['netns', 'pids', netns]));
      if (pids.length === 0) break;
      killPids(pids);
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 25); // a short sleep without an event loop
    }
    runSync(['netns', 'del', netns]);
  }
}

function parseNamespaceList(text: string): string[] {
  // `ip netns list` prints "name" or "name (id: 3)".
  return text.split('\n').map((line) => line.trim().split(/\s+/)[0] ?? '').filter((name) => name.length > 0);
}

export async function listNamespaces(): Promise<string[]> {
  return parseNamespaceList((await run('ip', ['netns', 'list'], { timeoutMs: 5_000 })).stdout);
}

// ---- state files ------------------------------------------------------------------------------------------------

function writeLabState(state: LabState): void {
  mkdirSync(LAB_STATE_DIR, { recursive: true });
  const path = labStatePath(state.name);
  const temporary = `${path}.${process.pid}.tmp`;
  writeFileSync(temporary, `${JSON.stringify(state, null, 2)}\n`);
  renameSync(temporary, path);
}

export function readLabState(name: string): LabState | undefined {
  try {
    return JSON.parse(readFileSync(labStatePath(name), 'utf8')) as LabState;
  } catch {
    return undefined;
  }
}

function removeLabState(name: string): void {
  rmSync(labStatePath(name), { force: true });
}

function removeLabWorkDir(name: string): void {
  rmSync(labWorkDir(name), { recursive: true, force: true });
}

export function listLabStates(): LabState[] {
  let files: string[];
  try {
    files = readdirSync(LAB_STATE_DIR);
  } catch {
    return [];
  }
  const states: LabState[] = [];
  for (const file of files) {
    if (!file.endsWith('.json')) continue;
    const state = readLabState(file.slice(0, -'.json'.length));
    if (state !== undefined) states.push(state);
  }
  return states;
}

export function processStartTime(pid: number): string | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Field 2 (comm) may contain spaces and parentheses: count fields after the last ')'. starttime is field 22.
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19] ?? null;
  } catch {
    return null;
  }
}

/** True when the process that made the lab still runs (same pid and same start time). */
export function isLabOwnerAlive(state: LabState): boolean {
  const startTime = processStartTime(state.ownerPid);
  return startTime !== null && (state.ownerStartTime === null || startTime === state.ownerStartTime);
}

// ---- removal after a crash --------------------------------------------------------------------------------------

/** Removes a lab by name, from its state file, or from its namespace names when the file is gone. */
export async function destroyLab(name: string): Promise<void> {
  checkLabName(name);
  for (const lab of liveLabs) if (lab.name === name) await lab.destroy();
  const state = readLabState(name);
  const namespaces = new Set(state?.namespaces ?? []);
  for (const netns of await listNamespaces()) {
    if (netns === hubNamespace(name) || labNamespacePattern(name).test(netns)) namespaces.add(netns);
  }
  await removeNamespaces([...namespaces]);
  removeLabState(name);
  removeLabWorkDir(name);
}

export interface StaleLabOptions {
  /** Also remove labs whose owner process is still running (default false: those are someone's live test). */
  includeLive?: boolean;
}

/**
 * Removes labs whose names start with `prefix` (itself starting with `vxt-`) left by crashed processes: every lab
 * recorded in /run/vxtun/labs whose owner is gone, and every namespace with that prefix that no live lab claims.
 * Returns the namespaces removed.
 */
export async function destroyStaleLabs(prefix: string = LAB_PREFIX, options: StaleLabOptions = {}): Promise<string[]> {
  if (!prefix.startsWith(LAB_PREFIX)) throw new Error(`refusing to remove labs with prefix "${prefix}": must start with "${LAB_PREFIX}"`);
  const ours = new Set([...liveLabs].map((lab) => lab.name));
  const claimed = new Set<string>();
  const stale = new Set<string>();
  const staleStates: string[] = [];
  for (const state of listLabStates()) {
    if (!state.name.startsWith(prefix)) continue;
    // A persistent lab has no owner to outlive it: it stays until destroyLab, unless its namespaces are all gone.
    const live = ours.has(state.name) || isLabOwnerAlive(state) || (state.persistent === true && await anyNamespaceExists(state.namespaces));
    if (live && !options.includeLive) {
      for (const netns of state.namespaces) claimed.add(netns);
    } else {
      for (const netns of state.namespaces) stale.add(netns);
      staleStates.push(state.name);
    }
  }
  const present = await listNamespaces();
  for (const netns of present) if (netns.startsWith(prefix) && !claimed.has(netns)) stale.add(netns);
  const removed = present.filter((netns) => stale.has(netns));
  await removeNamespaces(removed);
  for (const name of staleStates) {
    removeLabState(name);
    removeLabWorkDir(name);
  }
  return removed;
}

async function anyNamespaceExists(namespaces: readonly string[]): Promise<boolean> {
  const present = new Set(await listNamespaces());
  return namespaces.some((netns) => present.has(netns));
}

/** A lab's node and pod namespaces by name (`<lab>-n3`, `<lab>-n3-p2`) and its outside host (`<lab>-out`). */
export function labNamespacePattern(labName: string): RegExp {
  return new RegExp(`^${escapeRegExp(labName)}-(n\\d+(-p\\d+)?|out)$`);
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

// ---- cleanup when the process ends ------------------------------------------------------------------------------

const liveLabs = new Set<LiveLab>();
let exitHooksInstalled = false;

/**
 * A failing test still removes its labs: on 'exit' (normal end, uncaught exception, process.exit) and on SIGINT /
 * SIGTERM, which are then re-raised so the process ends as it would have. SIGKILL cannot be caught: the state file
 * and destroyStaleLabs cover it.
 */
function installExitHooks(): void {
  if (exitHooksInstalled) return;
  exitHooksInstalled = true;
  const destroyAll = (): void => {
    for (const lab of [...liveLabs]) lab.destroySync();
  };
  process.on('exit', destroyAll);
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    const onSignal = (): void => {
      destroyAll();
      process.removeListener(signal, onSignal);
      if (process.listenerCount(signal) === 0) process.kill(process.pid, signal);
    };
    process.on(signal, onSignal);
  }
}
