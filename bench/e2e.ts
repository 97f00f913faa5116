// End-to-end benchmark in network namespaces, in interleaved rounds: every path's lab is set up once and kept, then
// each round measures every figure on every path in a fixed order (for each figure: kernel-vxlan, vxtun-vxlan, its
// variants, vxtun-ipip, mixed, vxtun-vxlan-plain, underlay), so the runs compared with each other are minutes, not a
// quarter of an hour, apart, and drift of the shared machine (FACTS.md) reaches every path alike. Ratios are then
// taken round by round (bench/stats.ts). Paths and figures: bench/options.ts.
//
// Around every iperf3 run the machine's CPU time is read from /proc/stat (all CPUs' non-idle jiffies, USER_HZ from
// `getconf CLK_TCK`), giving machine CPU seconds per Gbit received (TCP) or per million datagrams received (UDP):
// softirq and kernel threads count, which is where the kernel's own VXLAN spends its cost.
//
// tcp1v6 (issue 12) needs IPv6 end to end: when it is asked for, the kernel-vxlan and vxtun-vxlan labs are made with an
// IPv6 underlay (2001:db8:1::/64) and programmed for IPv6 too, as flannel programs a dual-stack node: flannel-v6.1 with
// the node's IPv6 address as `local` and per peer the neighbor, FDB entry and route (src/lab/kernel-vxlan.ts), or
// dual-stack vxtun agents with --public-ipv6. tcp1 on those paths then runs in the same dual-stack labs.
import { addKernelPeer, addKernelPeer6, createKernelVtep, createKernelVtep6, FLANNEL_VXLAN_PORT } from '../src/lab/kernel-vxlan';
import { type IperfResult, runIperf } from '../src/lab/iperf';
import { Overlay } from '../src/lab/overlay';
import { ping, percentile } from '../src/lab/ping';
import { cpuSeconds, machineBusyShare, machineCpuSeconds, machineJiffies, peakRssBytes } from '../src/lab/proc';
import type { AgentStatus } from '../src/control/agent';
import { fetchStatus } from '../src/control/status-server';
import { type Lab, type LabNode, createLab } from '../src/lab/topology';
import { formatCidr, formatIPv4 } from '../src/wire/address';
import { formatIPv6 } from '../src/wire/address6';
import { spawn } from 'node:child_process';
import { cpus, loadavg } from 'node:os';
import { type BasePath, type FigureName, type PathSpec, TCP_FIGURES, UDP_FIGURES, measures } from './options';
import { cpuPerUnit, median } from './stats';

export { median } from './stats';

export interface E2eOptions {
  rounds: number;
  /** Seconds per iperf3 run. */
  seconds: number;
  /** In round order (bench/options.ts puts variants after their base). */
  paths: PathSpec[];
  figures: FigureName[];
  /** --figures was given (tcp1r then runs on every path). */
  figuresGiven: boolean;
  pingCount?: number;
  pingIntervalSeconds?: number;
  /** Seconds of the heap-sampling UDP flood per path with a receiving agent, after the rounds; 0 skips it. */
  floodSeconds?: number;
  /** Progress lines (to stderr). */
  log?: (line: string) => void;
}

/** One run of one figure on one path in one round. */
export interface Sample {
  round: number;
  /** Gbit/s (TCP), datagrams/s (UDP) or p50 us (ping); null when the run failed. */
  value: number | null;
  error: string | null;
  /** 1-minute load average when the run started. */
  load1: number;
  /**
   * Share of the whole machine (0-1) busy in the BACKGROUND_MS before the run, with nothing of ours running: other
   * work that the machine CPU figure of the run also counts. null for ping figures.
   */
  backgroundBusy: number | null;
  /** Machine CPU seconds (all CPUs, non-idle, /proc/stat) over the run; iperf3 figures only. */
  machineCpuSeconds: number | null;
  /** Gbit (TCP) or million datagrams (UDP) received during the run. */
  carried: number | null;
  /** machineCpuSeconds / carried: s per Gbit (TCP), s per million packets (UDP). */
  cpuPerUnit: number | null;
  /** The agents' CPU seconds (all agents of the path summed) over the run; null without agents. */
  agentCpuSeconds: number | null;
  /** Ping figures: p99 us, replies, and every reply's rtt in us. */
  ping?: { p99Us: number | null; received: number; transmitted: number; rttsUs: number[] };
}

export interface FigureResult {
  figure: FigureName;
  samples: Sample[];
  /** Median over the rounds' values. */
  median: number | null;
  /** Median over the rounds' machine CPU cost per unit (iperf3 figures). */
  cpuPerUnitMedian: number | null;
  /** Median over the rounds' agent CPU seconds. */
  agentCpuMedian: number | null;
  /** Ping figures: median over the rounds' p99. */
  p99Median?: number | null;
}

export interface PathResult {
  path: string;
  base: BasePath;
  agentArgs: string[];
  /** Set when the path could not be set up at all; its figures are then empty. */
  error: string | null;
  figures: Partial<Record<FigureName, FigureResult>>;
  /** Largest VmHWM among the agents at the end of the rounds, in bytes; null without agents. */
  agentPeakRssBytes: number | null;
  /** The receiving agent's JS heap sampled every second through a UDP 64 B flood after the rounds. */
  floodHeap: { seconds: number; startMb: number; maxMb: number; endMb: number; packets: number } | null;
}

export interface E2eResult {
  rounds: number;
  seconds: number;
  startedAt: string;
  /** os.loadavg() when the suite started: 1, 5 and 15 minutes. */
  loadAverageStart: number[];
  /** Wall-clock seconds of the whole suite, set-up and tear-down included. */
  durationSeconds: number;
  paths: PathResult[];
}

/** What a path's setup hands to the measurements. */
interface PathSetup {
  lab: Lab;
  client: LabNode;
  server: LabNode;
  /** Address of the server node across the path under test. */
  target: string;
  /** Its IPv6 address across the path (the server's IPv6 lease address) when the lab was made dual-stack for tcp1v6. */
  target6: string | null;
  agentPids: number[];
  /** The server's agent status socket, for heap samples; null when the server runs none. */
  serverStatusSocket: string | null;
  close(): Promise<void>;
}

function message(error: unknown): string {
  return (error instanceof Error ? error.message : String(error)).split('\n').slice(0, 3).join(' | ');
}

const SHORT: Record<BasePath, string> = {
  'kernel-vxlan': 'kv', 'vxtun-vxlan': 'vv', 'vxtun-ipip': 'vi', mixed: 'mx', 'vxtun-vxlan-plain': 'vp', underlay: 'ul',
};

function labName(path: PathSpec, index: number): string {
  return `vxt-b${process.pid}-${SHORT[path.base]}${path.agentArgs.length > 0 ? index : ''}`;
}

async function setUpVxtun(backend: 'vxlan' | 'ipip', name: string, agentArgs: string[], ipv6 = false): Promise<PathSetup> {
  const lab = await createLab({ name, nodes: 2, ...(ipv6 ? { underlay6: true } : {}) });
  let overlay: Overlay | undefined;
  const close = async (): Promise<void> => {
    await overlay?.close();
    await lab.destroy();
  };
  try {
    // Dual stack over the IPv6 underlay: the agents get --public-ipv6 (Overlay.startAgent) and carry IPv6 over IPv6.
    overlay = await Overlay.create(lab, { backend, ...(ipv6 ? { ipv6: { underlay: true } } : {}) });
    const [client, server] = [lab.node(1), lab.node(2)];
    // Node to node, no pods: no masquerade rules (their nat table would put conntrack on the path the kernel baselines lack).
    const args = ['--no-ip-masq', ...agentArgs];
    const handles = [await overlay.startAgent(client, args), await overlay.startAgent(server, args)];
    await overlay.waitForRoutes(client, 1);
    await overlay.waitForRoutes(server, 1);
    const target = formatIPv4((await overlay.subnetOf(server)).address);
    let target6: string | null = null;
    if (ipv6) {
      const [c6, s6] = [await overlay.subnet6Of(client), await overlay.subnet6Of(server)];
      if (c6 === undefined || s6 === undefined) throw new Error('a dual-stack agent holds no IPv6 lease');
      await overlay.waitForSubnets(client, [{ subnet6: s6 }]);
      await overlay.waitForSubnets(server, [{ subnet6: c6 }]);
      target6 = formatIPv6(s6.address); // the server TUN's <subnet6>::/128
    }
    const agentPids = handles.map((handle) => {
      if (handle.process.pid === undefined) throw new Error(`agent in ${handle.node.name} has no pid`);
      return handle.process.pid;
    });
    return { lab, client, server, target, target6, agentPids, serverStatusSocket: handles[1]!.statusSocket, close };
  } catch (error) {
    await close();
    throw error;
  }
}

/**
 * The cluster most users run while migrating: vxtun on the client node, Linux's VXLAN device on the server node
 * programmed as flannel's vxlan backend does (Overlay.addKernelNode: flannel's port 8472, one neighbor, FDB entry and
 * route per lease, and `ethtool -K tx off` on the kernel VTEP, the workaround flannel documents for user-space peers).
 */
async function setUpMixed(name: string, agentArgs: string[]): Promise<PathSetup> {
  const lab = await createLab({ name, nodes: 2 });
  let overlay: Overlay | undefined;
  const close = async (): Promise<void> => {
    await overlay?.close();
    await lab.destroy();
  };
  try {
    overlay = await Overlay.create(lab, { backend: 'vxlan', port: FLANNEL_VXLAN_PORT });
    const [client, server] = [lab.node(1), lab.node(2)];
    const handle = await overlay.startAgent(client, ['--no-ip-masq', ...agentArgs]);
    const taken = formatCidr(await overlay.subnetOf(client));
    const kernelSubnet = ['10.17.250.0/24', '10.17.251.0/24'].find((c) => c !== taken)!;
    await overlay.addKernelNode(server, kernelSubnet);
    await overlay.waitForRoutes(client, 1);
    if (handle.process.pid === undefined) throw new Error(`agent in ${client.name} has no pid`);
    return { lab, client, server, target: kernelSubnet.replace('/24', ''), target6: null, agentPids: [handle.process.pid], serverStatusSocket: null, close };
  } catch (error) {
    await close();
    throw error;
  }
}

async function setUpKernelVxlan(name: string, ipv6 = false): Promise<PathSetup> {
  const lab = await createLab({ name, nodes: 2, ...(ipv6 ? { underlay6: true } : {}) });
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
    if (ipv6) {
      // flanneld with EnableIPv6 and a PublicIPv6: a second device, flannel-v6.1, over the IPv6 underlay.
      const subnets6 = ['fd00:17:0:1::/64', 'fd00:17:0:2::/64'];
      const macs6 = ['0e:00:00:00:fe:61', '0e:00:00:00:fe:62'];
      for (let i = 0; i < 2; i++) {
        await createKernelVtep6(lab, nodes[i], { vni: 1, port: FLANNEL_VXLAN_PORT, vtepMac: macs6[i]!, address: subnets6[i]! });
      }
      for (let i = 0; i < 2; i++) {
        const peer = 1 - i;
        await addKernelPeer6(lab, nodes[i], { subnet: subnets6[peer]!, vtepMac: macs6[peer]!, publicIpv6: nodes[peer].underlayIp6!, vni: 1 });
      }
    }
    return {
      lab, client: nodes[0], server: nodes[1], target: '10.17.2.0', target6: ipv6 ? 'fd00:17:0:2::' : null,
      agentPids: [], serverStatusSocket: null, close: () => lab.destroy(),
    };
  } catch (error) {
    await lab.destroy();
    throw error;
  }
}

async function setUpUnderlay(name: string): Promise<PathSetup> {
  const lab = await createLab({ name, nodes: 2 });
  return { lab, client: lab.node(1), server: lab.node(2), target: lab.node(2).underlayIp, target6: null, agentPids: [], serverStatusSocket: null, close: () => lab.destroy() };
}

/** `ipv6`: the path measures tcp1v6, so its lab is made dual-stack over an IPv6 underlay. */
function setUp(path: PathSpec, index: number, ipv6: boolean): Promise<PathSetup> {
  const name = labName(path, index);
  switch (path.base) {
    case 'vxtun-vxlan': return setUpVxtun('vxlan', name, path.agentArgs, ipv6);
    case 'vxtun-vxlan-plain': return setUpVxtun('vxlan', name, ['--no-offload', ...path.agentArgs], ipv6);
    case 'vxtun-ipip': return setUpVxtun('ipip', name, path.agentArgs);
    case 'mixed': return setUpMixed(name, path.agentArgs);
    case 'kernel-vxlan': return setUpKernelVxlan(name, ipv6);
    case 'underlay': return setUpUnderlay(name);
  }
}

function agentsCpu(pids: readonly number[]): number {
  let sum = 0;
  for (const pid of pids) sum += cpuSeconds(pid);
  return sum;
}

const IPERF: Partial<Record<FigureName, { protocol: 'tcp' | 'udp'; streams?: number; udpPacketSize?: number; reverse?: boolean }>> = {
  tcp1: { protocol: 'tcp' },
  tcp1r: { protocol: 'tcp', reverse: true },
  tcp1v6: { protocol: 'tcp' },
  tcp4: { protocol: 'tcp', streams: 4 },
  udp64: { protocol: 'udp', udpPacketSize: 64 },
  udp1400: { protocol: 'udp', udpPacketSize: 1400 },
};

function emptySample(round: number): Sample {
  return { round, value: null, error: null, load1: loadavg()[0]!, backgroundBusy: null, machineCpuSeconds: null, carried: null, cpuPerUnit: null, agentCpuSeconds: null };
}

/** How long the machine's background load is sampled before each iperf3 run. */
const BACKGROUND_MS = 300;

/** One iperf3 run, with the machine's and the agents' CPU read around it. */
async function iperfSample(setup: PathSetup, options: E2eOptions, figure: FigureName, round: number): Promise<Sample> {
  const sample = emptySample(round);
  try {
    const idleBefore = machineJiffies();
    await new Promise((resolve) => setTimeout(resolve, BACKGROUND_MS));
    sample.backgroundBusy = machineBusyShare(idleBefore, machineJiffies());
    const agentsBefore = agentsCpu(setup.agentPids);
    const machineBefore = machineJiffies();
    const address = figure === 'tcp1v6' ? setup.target6 : setup.target;
    if (address === null) throw new Error(`${figure}: the path was set up without IPv6`);
    const result: IperfResult = await runIperf(setup.lab, {
      server: setup.server, client: setup.client, address, seconds: options.seconds, ...IPERF[figure]!,
    });
    const machine = machineCpuSeconds(machineBefore, machineJiffies());
    sample.machineCpuSeconds = machine;
    if (setup.agentPids.length > 0) sample.agentCpuSeconds = agentsCpu(setup.agentPids) - agentsBefore;
    if (TCP_FIGURES.includes(figure)) {
      sample.value = result.gbitPerSecond;
      sample.carried = (result.bytes * 8) / 1e9;
    } else {
      sample.value = result.packetsPerSecond ?? 0;
      sample.carried = ((result.packetsPerSecond ?? 0) * result.seconds) / 1e6;
    }
    sample.cpuPerUnit = cpuPerUnit(machine, sample.carried);
  } catch (error) {
    sample.error = message(error);
  }
  return sample;
}

/** Ping p50 / p99; with `busy`, while a nice-19 spinner per core keeps every CPU awake (no wake-up latency). */
async function pingSample(setup: PathSetup, options: E2eOptions, round: number, busy: boolean): Promise<Sample> {
  const sample = emptySample(round);
  const spinners = busy ? cpus().map(() => spawn('nice', ['-n', '19', 'sh', '-c', 'while :; do :; done'], { stdio: 'ignore' })) : [];
  try {
    if (busy) await new Promise((resolve) => setTimeout(resolve, 200));
    const replies = await ping(setup.lab, setup.client, setup.target, { count: options.pingCount ?? 50, intervalSeconds: options.pingIntervalSeconds ?? 0.05 });
    const sorted = [...replies.rttsMs].sort((a, b) => a - b);
    sample.ping = {
      p99Us: sorted.length > 0 ? percentile(sorted, 99) * 1000 : null,
      received: replies.received,
      transmitted: replies.transmitted,
      rttsUs: replies.rttsMs.map((ms) => Math.round(ms * 1000)),
    };
    if (sorted.length > 0) sample.value = percentile(sorted, 50) * 1000;
    else sample.error = `no replies of ${replies.transmitted}`;
  } catch (error) {
    sample.error = message(error);
  } finally {
    for (const spinner of spinners) spinner.kill('SIGKILL');
  }
  return sample;
}

function describe(figure: FigureName, s: Sample): string {
  if (s.value === null) return `FAILED: ${s.error}`;
  const unit = TCP_FIGURES.includes(figure) ? 'Gbit/s' : UDP_FIGURES.includes(figure) ? 'pps' : 'us p50';
  const value = TCP_FIGURES.includes(figure) ? s.value.toFixed(2) : s.value.toFixed(0);
  const cpu = s.cpuPerUnit === null ? '' : `, machine ${s.machineCpuSeconds!.toFixed(2)} s CPU = ${s.cpuPerUnit.toFixed(3)} s/${TCP_FIGURES.includes(figure) ? 'Gbit' : 'Mpkt'}`;
  const agents = s.agentCpuSeconds === null ? '' : `, agents ${s.agentCpuSeconds.toFixed(2)} s`;
  const pings = s.ping ? `, p99 ${s.ping.p99Us?.toFixed(0)} us, ${s.ping.received}/${s.ping.transmitted}` : '';
  const background = s.backgroundBusy === null ? '' : `, machine ${(s.backgroundBusy * 100).toFixed(0)}% busy before`;
  return `${value} ${unit}${cpu}${agents}${pings} (load ${s.load1.toFixed(1)}${background})`;
}

function summarize(result: FigureResult): void {
  const values = result.samples.flatMap((s) => (s.value === null ? [] : [s.value]));
  result.median = median(values);
  result.cpuPerUnitMedian = median(result.samples.flatMap((s) => (s.cpuPerUnit === null ? [] : [s.cpuPerUnit])));
  result.agentCpuMedian = median(result.samples.flatMap((s) => (s.agentCpuSeconds === null || s.value === null ? [] : [s.agentCpuSeconds])));
  if (result.figure === 'ping' || result.figure === 'ping-busy') {
    result.p99Median = median(result.samples.flatMap((s) => (s.ping?.p99Us == null ? [] : [s.ping.p99Us])));
  }
}

/** Samples the receiving agent's heap every second while iperf3 floods it with 64-byte UDP datagrams. */
async function floodHeap(setup: PathSetup, socket: string, seconds: number): Promise<NonNullable<PathResult['floodHeap']>> {
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

/**
 * A path whose target does not answer pings after setup (a variant whose flags break forwarding, a broken lab) is
 * reported as failed at once, instead of as every run of every round failing. Two tries: the first packets may wait
 * for ARP and the agents' first table sync.
 */
async function checkReachable(setup: PathSetup): Promise<void> {
  for (const target of [setup.target, ...(setup.target6 !== null ? [setup.target6] : [])]) {
    for (let attempt = 1; ; attempt++) {
      const replies = await ping(setup.lab, setup.client, target, { count: 3, intervalSeconds: 0.2 });
      if (replies.received > 0) break;
      if (attempt === 2) throw new Error(`${target} does not answer pings from ${setup.client.name} after setup`);
      await new Promise((resolve) => setTimeout(resolve, 1000));
    }
  }
}

/**
 * Sets every path up, runs the rounds, then the floods, and tears everything down (also on failure). A path whose
 * setup fails is reported with its error; a failed run is a sample with its error; the others still run.
 */
export async function runE2e(options: E2eOptions): Promise<E2eResult> {
  const log = options.log ?? (() => undefined);
  const startedAt = new Date();
  const loadAverageStart = loadavg();
  const results: PathResult[] = options.paths.map((p) => ({
    path: p.name, base: p.base, agentArgs: p.agentArgs, error: null, figures: {}, agentPeakRssBytes: null, floodHeap: null,
  }));
  const setups: Array<PathSetup | null> = options.paths.map(() => null);
  try {
    for (let i = 0; i < options.paths.length; i++) {
      log(`e2e ${options.paths[i]!.name}: setting up`);
      try {
        setups[i] = await setUp(options.paths[i]!, i, measures(options, options.paths[i]!, 'tcp1v6'));
        const v6 = setups[i]!.target6 !== null ? ` and ${setups[i]!.target6}` : '';
        log(`e2e ${options.paths[i]!.name}: ${setups[i]!.client.name} -> ${setups[i]!.target}${v6}`);
        await checkReachable(setups[i]!);
      } catch (error) {
        await setups[i]?.close().catch(() => undefined);
        setups[i] = null;
        results[i]!.error = message(error);
        log(`e2e ${options.paths[i]!.name}: setup FAILED: ${results[i]!.error}`);
      }
    }
    for (let round = 1; round <= options.rounds; round++) {
      for (const figure of options.figures) {
        for (let i = 0; i < options.paths.length; i++) {
          const setup = setups[i];
          const path = options.paths[i]!;
          if (setup === null || !measures(options, path, figure)) continue;
          const sample = IPERF[figure] !== undefined
            ? await iperfSample(setup, options, figure, round)
            : await pingSample(setup, options, round, figure === 'ping-busy');
          const result = (results[i]!.figures[figure] ??= { figure, samples: [], median: null, cpuPerUnitMedian: null, agentCpuMedian: null });
          result.samples.push(sample);
          log(`round ${round}/${options.rounds} ${figure} ${path.name}: ${describe(figure, sample)}`);
        }
      }
    }
    for (const result of results) for (const figure of Object.values(result.figures)) summarize(figure!);
    for (let i = 0; i < options.paths.length; i++) {
      const setup = setups[i];
      if (setup === null) continue;
      if (setup.serverStatusSocket !== null && (options.floodSeconds ?? 30) > 0) {
        try {
          const h = await floodHeap(setup, setup.serverStatusSocket, options.floodSeconds ?? 30);
          results[i]!.floodHeap = h;
          log(`e2e ${options.paths[i]!.name} flood ${h.seconds} s: heap ${h.startMb.toFixed(1)} -> max ${h.maxMb.toFixed(1)} -> ${h.endMb.toFixed(1)} MB over ${h.packets} packets`);
        } catch (error) {
          log(`e2e ${options.paths[i]!.name} flood FAILED: ${message(error)}`);
        }
      }
      if (setup.agentPids.length > 0) {
        let peak = 0;
        for (const pid of setup.agentPids) {
          try {
            peak = Math.max(peak, peakRssBytes(pid) ?? 0);
          } catch {
            // the agent is gone: its runs have failed and say so
          }
        }
        results[i]!.agentPeakRssBytes = peak > 0 ? peak : null;
      }
    }
  } finally {
    for (let i = 0; i < setups.length; i++) {
      await setups[i]?.close().catch((error: unknown) => log(`e2e ${options.paths[i]!.name}: teardown FAILED: ${message(error)}`));
    }
  }
  return {
    rounds: options.rounds, seconds: options.seconds, startedAt: startedAt.toISOString(), loadAverageStart,
    durationSeconds: (Date.now() - startedAt.getTime()) / 1000, paths: results,
  };
}
