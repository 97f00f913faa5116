// End-to-end benchmark in network namespaces: the same iperf3 and ping runs over four paths between two nodes of a
// fresh lab each, in one process, so that the figures are compared side by side (FACTS.md: this machine is noisy,
// only ratios measured together mean something).
//
//   vxtun-vxlan   two `vxtun agent` processes, VXLAN (port 4789)
//   vxtun-ipip    two `vxtun agent` processes, IP-in-IP over raw sockets
//   kernel-vxlan  Linux's VXLAN device at both ends, programmed as flannel does (offloads left on, as flannel runs)
//   underlay      the lab's veth + bridge, no overlay: the ceiling
import { createKernelVtep, addKernelPeer, FLANNEL_VXLAN_PORT } from '../src/lab/kernel-vxlan';
import { type IperfResult, runIperf } from '../src/lab/iperf';
import { Overlay } from '../src/lab/overlay';
import { ping, percentile } from '../src/lab/ping';
import { cpuSeconds, peakRssBytes } from '../src/lab/proc';
import type { AgentStatus } from '../src/control/agent';
import { fetchStatus } from '../src/control/status-server';
import { type Lab, type LabNode, createLab } from '../src/lab/topology';
import { formatIPv4 } from '../src/wire/address';
import { spawn } from 'node:child_process';
import { cpus } from 'node:os';

/** vxtun-vxlan-plain: the same agents with --no-offload, one packet per system call (the design offloads replaced). */
export const PATHS = ['vxtun-vxlan', 'vxtun-vxlan-plain', 'vxtun-ipip', 'kernel-vxlan', 'underlay'] as const;
export type PathName = (typeof PATHS)[number];

export interface E2eOptions {
  /** Throughput runs per figure; the median is reported. */
  runs: number;
  /** Seconds per iperf3 run. */
  seconds: number;
  pingCount?: number;
  pingIntervalSeconds?: number;
  /** Length of the UDP flood during which the agent's heap is sampled (default 30 s). */
  floodSeconds?: number;
  /** Progress lines (to stderr). */
  log?: (line: string) => void;
}

/** One figure measured `runs` times: every value, their median, and the errors of the runs that failed. */
export interface Figure {
  values: number[];
  median: number | null;
  errors: string[];
  /** Agents' CPU seconds (all agents summed) during each successful run; empty without agents. */
  agentCpuSeconds: number[];
}

export interface PathResult {
  path: PathName;
  /** Set when the path could not be set up at all; the figures are then empty. */
  error: string | null;
  tcp1Gbps: Figure;
  tcp4Gbps: Figure;
  udp64Pps: Figure;
  udp1400Pps: Figure;
  ping: { p50Us: number | null; p99Us: number | null; received: number; transmitted: number; error: string | null; rttsUs: number[] };
  /** Ping p50 again while idle-priority spinners keep both cores awake: what is left without CPU wake-up latency. */
  pingBusyP50Us: number | null;
  /** Median over the TCP single-stream runs of both agents' CPU seconds; null without agents. */
  agentCpuSecondsTcp1: number | null;
  /** Largest VmHWM among the agents at the end of the path, in bytes; null without agents. */
  agentPeakRssBytes: number | null;
  /** The receiving agent's JS heap sampled every second through a UDP 64 B flood; null without agents. */
  floodHeap: { seconds: number; startMb: number; maxMb: number; endMb: number; packets: number } | null;
}

/** What a path's setup hands to the measurements. */
interface PathSetup {
  lab: Lab;
  client: LabNode;
  server: LabNode;
  /** Address of the server node across the path under test. */
  target: string;
  agentPids: number[];
  /** The agents' status sockets (vxtun paths), for heap samples. */
  statusSockets: string[];
  close(): Promise<void>;
}

export function median(values: readonly number[]): number | null {
  if (values.length === 0) return null;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

function message(error: unknown): string {
  return (error instanceof Error ? error.message : String(error)).split('\n').slice(0, 3).join(' | ');
}

function labName(path: PathName): string {
  return `vxt-b${process.pid}-${path.replace('vxtun-', 'v').replace('kernel-', 'k').replace('-plain', 'p').slice(0, 8)}`;
}

async function setUpVxtun(backend: 'vxlan' | 'ipip', path: PathName, agentArgs: string[] = []): Promise<PathSetup> {
  const lab = await createLab({ name: labName(path), nodes: 2 });
  let overlay: Overlay | undefined;
  const close = async (): Promise<void> => {
    await overlay?.close();
    await lab.destroy();
  };
  try {
    overlay = await Overlay.create(lab, { backend });
    const [client, server] = [lab.node(1), lab.node(2)];
    // Node to node, no pods: no masquerade rules (their nat table would put conntrack on the path the kernel baselines lack).
    const args = ['--no-ip-masq', ...agentArgs];
    const handles = [await overlay.startAgent(client, args), await overlay.startAgent(server, args)];
    await overlay.waitForRoutes(client, 1);
    await overlay.waitForRoutes(server, 1);
    const target = formatIPv4((await overlay.subnetOf(server)).address);
    const agentPids = handles.map((handle) => {
      if (handle.process.pid === undefined) throw new Error(`agent in ${handle.node.name} has no pid`);
      return handle.process.pid;
    });
    return { lab, client, server, target, agentPids, statusSockets: handles.map((h) => h.statusSocket), close };
  } catch (error) {
    await close();
    throw error;
  }
}

async function setUpKernelVxlan(): Promise<PathSetup> {
  const lab = await createLab({ name: labName('kernel-vxlan'), nodes: 2 });
  try {
    const nodes = [lab.node(1), lab.node(2)] as const;
    const subnets = ['10.17.1.0/24', '10.17.2.0/24'];
    const macs = ['0e:00:00:00:fe:01', '0e:00:00:00:fe:02'];
    for (let i = 0; i < 2; i++) {
      await createKernelVtep(lab, nodes[i], { vni: 1, port: FLANNEL_VXLAN_PORT, vtepMac: macs[i]!, address: subnets[i]! });
    }
    for (let i = 0; i < 2; i++) {
      const peer = 1 - i;
      await addKernelPeer(lab, nodes[i], { subnet: subnets[peer]!, vtepMac: macs[peer]!, publicIp: nodes[peer].underlayIp, vni: 1 });
    }
    return { lab, client: nodes[0], server: nodes[1], target: '10.17.2.0', agentPids: [], statusSockets: [], close: () => lab.destroy() };
  } catch (error) {
    await lab.destroy();
    throw error;
  }
}

async function setUpUnderlay(): Promise<PathSetup> {
  const lab = await createLab({ name: labName('underlay'), nodes: 2 });
  return { lab, client: lab.node(1), server: lab.node(2), target: lab.node(2).underlayIp, agentPids: [], statusSockets: [], close: () => lab.destroy() };
}

function setUp(path: PathName): Promise<PathSetup> {
  switch (path) {
    case 'vxtun-vxlan': return setUpVxtun('vxlan', path);
    case 'vxtun-vxlan-plain': return setUpVxtun('vxlan', path, ['--no-offload']);
    case 'vxtun-ipip': return setUpVxtun('ipip', path);
    case 'kernel-vxlan': return setUpKernelVxlan();
    case 'underlay': return setUpUnderlay();
  }
}

function agentsCpu(pids: readonly number[]): number {
  let sum = 0;
  for (const pid of pids) sum += cpuSeconds(pid);
  return sum;
}

/** Runs one iperf3 configuration `runs` times, sampling the agents' CPU around each run. */
async function measure(
  setup: PathSetup,
  options: E2eOptions,
  what: string,
  iperf: { protocol: 'tcp' | 'udp'; streams?: number; udpPacketSize?: number },
  pick: (result: IperfResult) => number,
): Promise<Figure> {
  const figure: Figure = { values: [], median: null, errors: [], agentCpuSeconds: [] };
  for (let run = 1; run <= options.runs; run++) {
    try {
      const before = agentsCpu(setup.agentPids);
      const result = await runIperf(setup.lab, {
        server: setup.server, client: setup.client, address: setup.target, seconds: options.seconds, ...iperf,
      });
      const cpu = agentsCpu(setup.agentPids) - before;
      figure.values.push(pick(result));
      if (setup.agentPids.length > 0) figure.agentCpuSeconds.push(cpu);
      options.log?.(`  ${what} run ${run}: ${pick(result).toFixed(3)}${setup.agentPids.length > 0 ? ` (agents ${cpu.toFixed(2)} s CPU)` : ''}`);
    } catch (error) {
      figure.errors.push(message(error));
      options.log?.(`  ${what} run ${run} FAILED: ${message(error)}`);
    }
  }
  figure.median = median(figure.values);
  return figure;
}

function emptyFigure(): Figure {
  return { values: [], median: null, errors: [], agentCpuSeconds: [] };
}

async function benchPath(path: PathName, options: E2eOptions): Promise<PathResult> {
  const result: PathResult = {
    path, error: null,
    tcp1Gbps: emptyFigure(), tcp4Gbps: emptyFigure(), udp64Pps: emptyFigure(), udp1400Pps: emptyFigure(),
    ping: { p50Us: null, p99Us: null, received: 0, transmitted: 0, error: null, rttsUs: [] },
    agentCpuSecondsTcp1: null, agentPeakRssBytes: null, floodHeap: null, pingBusyP50Us: null,
  };
  options.log?.(`e2e ${path}: setting up`);
  let setup: PathSetup;
  try {
    setup = await setUp(path);
  } catch (error) {
    result.error = message(error);
    options.log?.(`e2e ${path}: setup FAILED: ${result.error}`);
    return result;
  }
  try {
    options.log?.(`e2e ${path}: ${setup.client.name} -> ${setup.target}`);
    const gbps = (r: IperfResult): number => r.gbitPerSecond;
    const pps = (r: IperfResult): number => r.packetsPerSecond ?? 0;
    result.tcp1Gbps = await measure(setup, options, 'tcp x1 Gbit/s', { protocol: 'tcp' }, gbps);
    result.tcp4Gbps = await measure(setup, options, 'tcp x4 Gbit/s', { protocol: 'tcp', streams: 4 }, gbps);
    result.udp64Pps = await measure(setup, options, 'udp 64 B pps', { protocol: 'udp', udpPacketSize: 64 }, pps);
    result.udp1400Pps = await measure(setup, options, 'udp 1400 B pps', { protocol: 'udp', udpPacketSize: 1400 }, pps);
    try {
      const count = options.pingCount ?? 50;
      const replies = await ping(setup.lab, setup.client, setup.target, { count, intervalSeconds: options.pingIntervalSeconds ?? 0.05 });
      result.ping.received = replies.received;
      result.ping.transmitted = replies.transmitted;
      result.ping.rttsUs = replies.rttsMs.map((ms) => Math.round(ms * 1000));
      if (replies.rttsMs.length > 0) {
        const sorted = [...replies.rttsMs].sort((a, b) => a - b);
        result.ping.p50Us = percentile(sorted, 50) * 1000;
        result.ping.p99Us = percentile(sorted, 99) * 1000;
      }
      options.log?.(`  ping: ${replies.received}/${replies.transmitted}, p50 ${result.ping.p50Us?.toFixed(0)} us, p99 ${result.ping.p99Us?.toFixed(0)} us`);
    } catch (error) {
      result.ping.error = message(error);
    }
    try {
      result.pingBusyP50Us = await pingWithBusyCores(setup, options);
      options.log?.(`  ping with busy cores: p50 ${result.pingBusyP50Us?.toFixed(0)} us`);
    } catch (error) {
      options.log?.(`  ping with busy cores FAILED: ${message(error)}`);
    }
    if (setup.statusSockets.length > 0) {
      try {
        result.floodHeap = await floodHeap(setup, options.floodSeconds ?? 30);
        const h = result.floodHeap;
        options.log?.(`  flood ${h.seconds} s: heap ${h.startMb.toFixed(1)} -> max ${h.maxMb.toFixed(1)} -> ${h.endMb.toFixed(1)} MB over ${h.packets} packets`);
      } catch (error) {
        options.log?.(`  flood FAILED: ${message(error)}`);
      }
    }
    if (setup.agentPids.length > 0) {
      result.agentCpuSecondsTcp1 = median(result.tcp1Gbps.agentCpuSeconds);
      let peak = 0;
      for (const pid of setup.agentPids) peak = Math.max(peak, peakRssBytes(pid) ?? 0);
      result.agentPeakRssBytes = peak > 0 ? peak : null;
    }
  } catch (error) {
    result.error = message(error);
  } finally {
    await setup.close();
  }
  return result;
}

/** Ping p50 with one nice-19 spinner per core, so no CPU sleeps: separates wake-up latency from forwarding cost. */
async function pingWithBusyCores(setup: PathSetup, options: E2eOptions): Promise<number | null> {
  const spinners = cpus().map(() => spawn('nice', ['-n', '19', 'sh', '-c', 'while :; do :; done'], { stdio: 'ignore' }));
  try {
    await new Promise((resolve) => setTimeout(resolve, 200));
    const replies = await ping(setup.lab, setup.client, setup.target, { count: options.pingCount ?? 50, intervalSeconds: options.pingIntervalSeconds ?? 0.05 });
    if (replies.rttsMs.length === 0) return null;
    return percentile([...replies.rttsMs].sort((a, b) => a - b), 50) * 1000;
  } finally {
    for (const spinner of spinners) spinner.kill('SIGKILL');
  }
}

/** Samples the receiving agent's heap every second while iperf3 floods it with 64-byte UDP datagrams. */
async function floodHeap(setup: PathSetup, seconds: number): Promise<NonNullable<PathResult['floodHeap']>> {
  const socket = setup.statusSockets[setup.statusSockets.length - 1]!;
  const sample = async (): Promise<{ heap: number; packets: number }> => {
    const s = (await fetchStatus(socket)) as AgentStatus;
    return { heap: s.memory.heapUsedBytes / 2 ** 20, packets: (s.counters as { underlayIn: { packets: number } }).underlayIn.packets };
  };
  const start = await sample();
  const heaps = [start.heap];
  const flood = runIperf(setup.lab, { server: setup.server, client: setup.client, address: setup.target, seconds, protocol: 'udp', udpPacketSize: 64 });
  let done = false;
  void flood.finally(() => (done = true)).catch(() => undefined);
  while (!done) {
    await new Promise((resolve) => setTimeout(resolve, 1000));
    heaps.push((await sample()).heap);
  }
  await flood;
  const end = await sample();
  return { seconds, startMb: start.heap, maxMb: Math.max(...heaps), endMb: end.heap, packets: end.packets - start.packets };
}

/** Measures every path in turn; a path that fails is reported with its error, the others still run. */
export async function runE2e(options: E2eOptions, paths: readonly PathName[] = PATHS): Promise<PathResult[]> {
  const results: PathResult[] = [];
  for (const path of paths) results.push(await benchPath(path, options));
  return results;
}
