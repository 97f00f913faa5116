// Soak: a three-node vxtun lab (vxlan, embedded file store) carrying mixed traffic for N minutes while node 3 leaves
// and joins again and again (its agent stopped and its lease deleted, as a node drained and removed; then started
// again). Nodes 1 and 2 stay and carry traffic throughout. What it reports, with a verdict per target:
//   - packets lost outside leave windows (target 0): pings 1<->2 and 1,2 -> 3 (5/s each, -O -D), 3 -> 1 (restarted with
//     each join), and a small-packet UDP stream 2 -> 1 (iperf3, 64 B); a window runs from the stop of node 3 until
//     every peer routes to it again plus a second's grace
//   - agent RSS over time, sampled every 5 s from `vxtun status` (min/max per agent process; target: max < 100 MB)
//   - the buffer pool never exhausted (status pool.lowWater > 0 at every sample, no 'pool/exhausted' drops)
// plus a rate-limited TCP stream 1 -> 2 (iperf3 -b 200M, kept modest on a shared machine). Bounded in time: the run
// aborts after its length + 3 minutes; the lab is destroyed on every way out.
import type { ChildProcess } from 'node:child_process';
import type { AgentStatus } from '../src/control/agent';
import { DEFAULT_PREFIX, subnetKey } from '../src/control/lease';
import { Overlay } from '../src/lab/overlay';
import { type Lab, type LabNode, createLab } from '../src/lab/topology';
import { formatIPv4 } from '../src/wire/address';

export interface SoakOptions {
  minutes: number;
  log?: (line: string) => void;
}

interface PingStream {
  name: string;
  from: string;
  to: string;
  /** Nodes whose leave windows excuse this stream's losses. */
  excusedBy: string[];
  process: ChildProcess;
  output: string;
  stoppedAt?: number;
}

export interface PingFigures {
  name: string;
  sent: number;
  answered: number;
  lostInWindows: number;
  lostOutside: number;
  /** Send times (epoch s) of the packets lost outside windows, for the report. */
  lostOutsideAt: number[];
}

export interface AgentSamples {
  node: string;
  pid: number;
  /** Packets the kernel dropped at the TUN queue (the agent did not read in time), over this process's life. */
  tunQueueDrops: number;
  tunQueueDropsAtStart: number;
  samples: { t: number; rssMB: number; poolInUse: number; poolLowWater: number }[];
  poolCapacity: number;
  exhaustedDrops: number;
  drops: Record<string, number>;
}

export interface SoakResult {
  minutes: number;
  error: string | null;
  leaves: { startedAt: number; endedAt: number; peersDroppedMs: number; rejoinMs: number }[];
  pings: PingFigures[];
  udp: { sent: number; lost: number; error: string | null } | null;
  tcp: { mbitPerSecond: number; retransmits: number | null; error: string | null } | null;
  agents: AgentSamples[];
  /** Per node, UDP datagrams its kernel dropped for a full socket receive buffer (/proc/net/snmp RcvbufErrors) during the run. */
  udpRcvbufErrors: Record<string, number>;
  /**
   * The same drops by socket (/proc/net/udp "drops", sampled every 5 s, the last value of each socket): on the agent's
   * underlay socket (the VXLAN port) or on other sockets (the applications': iperf3's receiver).
   */
  udpSocketDrops: Record<string, { vxtun: number; applications: number }>;
  /** Pings and UDP datagrams lost outside leave windows, end to end. */
  lostOutsideWindows: number;
  /** The same less what the receiving applications' own sockets dropped (the kernel's, outside vxtun's path). */
  lostByOverlay: number;
}

const PING_INTERVAL_S = 0.2;
const SAMPLE_EVERY_MS = 5_000;
const DOWN_SECONDS = 3;
const GRACE_S = 1;
/** Packets sent this close to a stream's end may still be in flight: neither lost nor answered. */
const IN_FLIGHT_S = 1.5;
const RSS_TARGET_MB = 100;

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
const nowS = () => Date.now() / 1000;

function collect(child: ChildProcess, sink: { output: string }): void {
  child.stdout?.on('data', (chunk: Buffer) => { sink.output += chunk.toString(); });
  child.stderr?.on('data', (chunk: Buffer) => { sink.output += chunk.toString(); });
}

function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once('close', () => resolve()));
}

/**
 * Each sequence number's send time and whether it was answered, from `ping -D -O` output: a reply's send time is its
 * timestamp minus its round trip; "no answer yet" is printed one interval after the send; an ICMP error line soon after.
 */
export function parsePingTimeline(text: string, intervalS: number): Map<number, { sentAt: number; answered: boolean }> {
  const seqs = new Map<number, { sentAt: number; answered: boolean }>();
  for (const line of text.split('\n')) {
    const match = /^\[(\d+\.\d+)\] (.*icmp_seq=(\d+).*)$/.exec(line);
    if (match === null) continue;
    const ts = Number(match[1]);
    const rest = match[2]!;
    const seq = Number(match[3]);
    const rtt = /time=([\d.]+) ms/.exec(rest);
    const reply = rest.includes('bytes from') && rtt !== null;
    const sentAt = reply ? ts - Number(rtt[1]) / 1000 : rest.startsWith('no answer yet') ? ts - intervalS : ts;
    const known = seqs.get(seq);
    if (known === undefined) seqs.set(seq, { sentAt, answered: reply });
    else {
      known.sentAt = Math.min(known.sentAt, sentAt);
      known.answered ||= reply;
    }
  }
  return seqs;
}

function pingFigures(stream: PingStream, windows: Map<string, Array<[number, number]>>): PingFigures {
  const timeline = parsePingTimeline(stream.output, PING_INTERVAL_S);
  const end = stream.stoppedAt ?? nowS();
  const excused = (t: number) => stream.excusedBy.some((node) => (windows.get(node) ?? []).some(([a, b]) => t >= a && t <= b));
  const figures: PingFigures = { name: stream.name, sent: 0, answered: 0, lostInWindows: 0, lostOutside: 0, lostOutsideAt: [] };
  for (const { sentAt, answered } of timeline.values()) {
    if (sentAt > end - IN_FLIGHT_S) continue;
    figures.sent++;
    if (answered) figures.answered++;
    else if (excused(sentAt)) figures.lostInWindows++;
    else {
      figures.lostOutside++;
      figures.lostOutsideAt.push(sentAt);
    }
  }
  return figures;
}

export async function runSoak(options: SoakOptions): Promise<SoakResult> {
  const log = options.log ?? (() => {});
  const seconds = Math.round(options.minutes * 60);
  const result: SoakResult = { minutes: options.minutes, error: null, leaves: [], pings: [], udp: null, tcp: null, agents: [], udpRcvbufErrors: {}, udpSocketDrops: {}, lostOutsideWindows: 0, lostByOverlay: 0 };
  const lab = await createLab({ name: `vxt-soak${process.pid}`, nodes: 3 });
  let overlay: Overlay | undefined;
  let abort: NodeJS.Timeout | undefined;
  try {
    overlay = await Overlay.create(lab, { backend: 'vxlan' });
    const ov = overlay;
    const aborted = new Promise<never>((_, reject) => {
      abort = setTimeout(() => reject(new Error(`soak did not finish within ${seconds + 180} s`)), (seconds + 180) * 1000);
    });
    await Promise.race([aborted, soak(lab, ov, seconds, result, log)]);
  } catch (error) {
    result.error = error instanceof Error ? error.message : String(error);
    if (overlay) for (const node of lab.nodes) log(`--- agent log ${node.name} (tail)\n${overlay.log(node).split('\n').slice(-15).join('\n')}`);
  } finally {
    clearTimeout(abort);
    await overlay?.close().catch(() => {});
    await lab.destroy();
  }
  const pingsLost = result.pings.reduce((sum, p) => sum + p.lostOutside, 0);
  result.lostOutsideWindows = pingsLost + (result.udp?.lost ?? 0);
  // Only UDP sockets drop here: the UDP stream's receiver is iperf3 in node 1 (pings use ICMP sockets).
  result.lostByOverlay = pingsLost + Math.max(0, (result.udp?.lost ?? 0) - (result.udpSocketDrops.n1?.applications ?? 0));
  return result;
}

async function soak(lab: Lab, overlay: Overlay, seconds: number, result: SoakResult, log: (line: string) => void): Promise<void> {
  const [n1, n2, n3] = [lab.node(1), lab.node(2), lab.node(3)] as [LabNode, LabNode, LabNode];
  for (const node of lab.nodes) await overlay.startAgent(node);
  for (const node of lab.nodes) await overlay.waitForRoutes(node, 2, 15_000);
  const address = async (node: LabNode) => formatIPv4((await overlay.subnetOf(node)).address);
  const addr = { n1: await address(n1), n2: await address(n2), n3: await address(n3) };
  log(`soak: 3 agents up (${addr.n1}, ${addr.n2}, ${addr.n3}); ${seconds} s of traffic, node 3 leaving and joining`);

  const windows = new Map<string, Array<[number, number]>>([['n3', []]]);
  const streams: PingStream[] = [];
  const startPing = (from: LabNode, to: LabNode, excusedBy: string[]): PingStream => {
    const target = addr[to.name as 'n1' | 'n2' | 'n3'];
    const child = lab.spawn(from, 'ping', ['-n', '-D', '-O', '-i', String(PING_INTERVAL_S), '-W', '1', target], { stdio: 'pipe' });
    const stream: PingStream = { name: `ping ${from.name}->${to.name}`, from: from.name, to: to.name, excusedBy, process: child, output: '' };
    collect(child, stream);
    streams.push(stream);
    return stream;
  };
  const stopPing = async (stream: PingStream) => {
    stream.stoppedAt = nowS();
    stream.process.kill('SIGINT');
    await exited(stream.process);
  };

  const rcvbufErrors = async (node: LabNode): Promise<number> => {
    const { stdout } = await lab.exec(node, 'cat', ['/proc/net/snmp']);
    const lines = stdout.split('\n').filter((l) => l.startsWith('Udp:'));
    if (lines.length < 2) return 0;
    const names = lines[0]!.split(/\s+/);
    return Number(lines[1]!.split(/\s+/)[names.indexOf('RcvbufErrors')] ?? 0);
  };
  /** node -> socket (port/inode) -> drops, from /proc/net/udp as read inside the node's namespace. */
  const socketDrops = new Map<string, Map<string, { port: number; drops: number }>>();
  const readSocketDrops = async (node: LabNode): Promise<void> => {
    const { stdout } = await lab.exec(node, 'cat', ['/proc/net/udp']);
    const sockets = socketDrops.get(node.name) ?? new Map<string, { port: number; drops: number }>();
    socketDrops.set(node.name, sockets);
    for (const line of stdout.split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f.length < 13) continue;
      const port = parseInt(f[1]!.split(':')[1] ?? '0', 16);
      sockets.set(`${port}/${f[9]}`, { port, drops: Number(f[12]) });
    }
  };
  const rcvbufAtStart = new Map<string, number>();
  for (const node of lab.nodes) rcvbufAtStart.set(node.name, await rcvbufErrors(node));

  // The receiving iperf3 gets a 4 MB socket buffer (-w), so that a descheduled receiver on this shared machine is not
  // what loses packets; net.core.rmem_max is per namespace on these kernels (only the lab's namespaces change).
  for (const node of lab.nodes) await lab.exec(node, 'sysctl', ['-qw', 'net.core.rmem_max=8388608']);

  // Long-running traffic between the nodes that stay.
  const servers = [
    lab.spawn(n2, 'iperf3', ['-s', '-1', '-B', addr.n2, '-p', '5201'], { stdio: 'ignore' }),
    lab.spawn(n1, 'iperf3', ['-s', '-1', '-B', addr.n1, '-p', '5202'], { stdio: 'ignore' }),
  ];
  await sleep(500);
  const tcpOut = { output: '' };
  const tcp = lab.spawn(n1, 'iperf3', ['-c', addr.n2, '-p', '5201', '-t', String(seconds), '-b', '200M', '-J', '--connect-timeout', '3000'], { stdio: 'pipe' });
  collect(tcp, tcpOut);
  const udpOut = { output: '' };
  const udp = lab.spawn(n2, 'iperf3', ['-c', addr.n1, '-p', '5202', '-u', '-l', '64', '-b', '2M', '-w', '4M', '-t', String(seconds), '-J', '--connect-timeout', '3000'], { stdio: 'pipe' });
  collect(udp, udpOut);
  startPing(n1, n2, []);
  startPing(n2, n1, []);
  startPing(n1, n3, ['n3']);
  startPing(n2, n3, ['n3']);
  let fromN3 = startPing(n3, n1, ['n3']);

  // Samples of every agent's status; per agent process (a rejoined node is a new process).
  const agents = new Map<number, AgentSamples>();
  const t0 = nowS();
  const sample = async () => {
    for (const node of lab.nodes) {
      const handle = overlay.agents.get(node.name);
      const pid = handle?.process.pid;
      if (pid === undefined) continue;
      let status: AgentStatus;
      try {
        status = await overlay.status(node);
      } catch {
        continue; // leaving or joining right now
      }
      let entry = agents.get(pid);
      if (entry === undefined) {
        const queueDrops = status.tun?.kernelQueueDrops ?? 0;
        entry = { node: node.name, pid, tunQueueDrops: 0, tunQueueDropsAtStart: queueDrops, samples: [], poolCapacity: status.pool?.capacity ?? 0, exhaustedDrops: 0, drops: {} };
        agents.set(pid, entry);
      }
      entry.tunQueueDrops = (status.tun?.kernelQueueDrops ?? 0) - entry.tunQueueDropsAtStart;
      const drops = (status.counters as { drops: Record<string, number> } | undefined)?.drops ?? {};
      entry.drops = drops;
      entry.exhaustedDrops = drops['pool/exhausted'] ?? 0;
      await readSocketDrops(node).catch(() => undefined);
      entry.samples.push({ t: Math.round(nowS() - t0), rssMB: status.memory.rssBytes / 2 ** 20, poolInUse: status.pool?.inUse ?? 0, poolLowWater: status.pool?.lowWater ?? 0 });
    }
  };
  let sampling = false;
  const sampler = setInterval(() => {
    if (sampling) return;
    sampling = true;
    void sample().finally(() => { sampling = false; });
  }, SAMPLE_EVERY_MS);

  try {
    await sample();
    const end = t0 + seconds;
    // A leave every ~40 s (at least two in any run of a minute or more), spread over the run.
    const cycles = Math.max(1, Math.floor(seconds / 40));
    const spacing = seconds / (cycles + 1);
    for (let cycle = 1; cycle <= cycles; cycle++) {
      const at = t0 + cycle * spacing;
      if (at > nowS()) await sleep((at - nowS()) * 1000);
      if (nowS() > end - 15) break;
      const subnet = await overlay.subnetOf(n3);
      const start = nowS();
      const window: [number, number] = [start - 0.2, Number.POSITIVE_INFINITY];
      windows.get('n3')!.push(window);
      await stopPing(fromN3);
      await sample();
      await overlay.stopAgent(n3);
      await overlay.withStore((store) => store.delete(subnetKey(DEFAULT_PREFIX, subnet)));
      await overlay.waitForRoutes(n1, 1, 10_000);
      await overlay.waitForRoutes(n2, 1, 10_000);
      const peersDropped = nowS();
      await sleep(DOWN_SECONDS * 1000);
      const joinAt = nowS();
      await overlay.startAgent(n3);
      await overlay.waitForRoutes(n3, 2, 10_000);
      await overlay.waitForRoutes(n1, 2, 10_000);
      await overlay.waitForRoutes(n2, 2, 10_000);
      const rejoined = nowS();
      addr.n3 = await address(n3);
      window[1] = rejoined + GRACE_S;
      result.leaves.push({ startedAt: start, endedAt: rejoined, peersDroppedMs: Math.round((peersDropped - start) * 1000), rejoinMs: Math.round((rejoined - joinAt) * 1000) });
      log(`soak: leave ${cycle}/${cycles} at +${Math.round(start - t0)} s: peers dropped node 3 in ${Math.round((peersDropped - start) * 1000)} ms, rejoined in ${Math.round((rejoined - joinAt) * 1000)} ms (${addr.n3})`);
      await sleep(GRACE_S * 1000);
      fromN3 = startPing(n3, n1, ['n3']);
    }
    await Promise.race([Promise.all([exited(tcp), exited(udp)]), sleep(Math.max(0, end - nowS()) * 1000 + 20_000)]);
    await sample();
  } finally {
    clearInterval(sampler);
    for (const stream of streams) if (stream.stoppedAt === undefined) await stopPing(stream);
    for (const child of [tcp, udp, ...servers]) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }

  result.pings = streams.map((s) => pingFigures(s, windows)).reduce<PingFigures[]>((merged, f) => {
    const same = merged.find((m) => m.name === f.name); // node 3's stream, one per join
    if (same === undefined) merged.push(f);
    else {
      same.sent += f.sent;
      same.answered += f.answered;
      same.lostInWindows += f.lostInWindows;
      same.lostOutside += f.lostOutside;
      same.lostOutsideAt.push(...f.lostOutsideAt);
    }
    return merged;
  }, []);
  result.tcp = parseTcp(tcpOut.output);
  result.udp = parseUdp(udpOut.output);
  result.agents = [...agents.values()];
  for (const node of lab.nodes) {
    result.udpRcvbufErrors[node.name] = (await rcvbufErrors(node)) - (rcvbufAtStart.get(node.name) ?? 0);
    const split = { vxtun: 0, applications: 0 };
    for (const { port, drops } of socketDrops.get(node.name)?.values() ?? []) {
      if (port === overlay.port) split.vxtun += drops;
      else split.applications += drops;
    }
    result.udpSocketDrops[node.name] = split;
  }
}

interface IperfSum {
  bits_per_second?: number;
  retransmits?: number;
  packets?: number;
  lost_packets?: number;
}
interface IperfJson {
  end?: { sum?: IperfSum; sum_sent?: IperfSum; sum_received?: IperfSum };
  error?: string;
}

function iperfJson(text: string): IperfJson | null {
  const start = text.indexOf('{');
  if (start < 0) return null;
  try {
    return JSON.parse(text.slice(start)) as IperfJson;
  } catch {
    return null;
  }
}

function parseTcp(text: string): SoakResult['tcp'] {
  const json = iperfJson(text);
  if (json === null) return { mbitPerSecond: 0, retransmits: null, error: `no iperf3 result: ${text.slice(0, 200)}` };
  const sum = json.end?.sum_received ?? json.end?.sum;
  return { mbitPerSecond: (sum?.bits_per_second ?? 0) / 1e6, retransmits: json.end?.sum_sent?.retransmits ?? null, error: json.error ?? null };
}

function parseUdp(text: string): SoakResult['udp'] {
  const json = iperfJson(text);
  if (json === null) return { sent: 0, lost: 0, error: `no iperf3 result: ${text.slice(0, 200)}` };
  const sum = json.end?.sum;
  return { sent: sum?.packets ?? 0, lost: sum?.lost_packets ?? 0, error: json.error ?? null };
}

function verdict(met: boolean, what: string, figures: string): string {
  return `${met ? 'MET   ' : 'MISSED'}  ${what}: ${figures}`;
}

export function formatSoak(r: SoakResult): string {
  const out: string[] = [`soak (3 nodes, vxlan, file store; ${r.minutes} min; node 3 left and rejoined ${r.leaves.length} times)`];
  if (r.error) out.push(`! soak failed: ${r.error}`);
  const clock = (t: number) => new Date(t * 1000).toISOString().slice(11, 22);
  for (const leave of r.leaves) out.push(`  leave ${clock(leave.startedAt)}-${clock(leave.endedAt)}: peers dropped node 3 in ${leave.peersDroppedMs} ms; rejoined (all routes back) ${leave.rejoinMs} ms after its agent started`);
  for (const p of r.pings) {
    out.push(`  ${p.name.padEnd(14)} sent ${p.sent}, answered ${p.answered}, lost in leave windows ${p.lostInWindows}, lost outside ${p.lostOutside}`
      + (p.lostOutsideAt.length > 0 ? ` (at ${p.lostOutsideAt.slice(0, 5).map(clock).join(', ')}${p.lostOutsideAt.length > 5 ? ', ...' : ''})` : ''));
  }
  if (r.udp) out.push(`  udp 64 B n2->n1 sent ${r.udp.sent}, lost ${r.udp.lost}${r.udp.error ? ` (${r.udp.error})` : ''}`);
  if (r.tcp) out.push(`  tcp n1->n2 (iperf3 -b 200M) ${r.tcp.mbitPerSecond.toFixed(1)} Mbit/s, retransmits ${r.tcp.retransmits ?? 'n/a'}${r.tcp.error ? ` (${r.tcp.error})` : ''}`);
  let rssMax = 0;
  let poolOk = true;
  for (const a of r.agents) {
    const rss = a.samples.map((s) => s.rssMB);
    const low = Math.min(...a.samples.map((s) => s.poolLowWater));
    const inUse = Math.max(...a.samples.map((s) => s.poolInUse));
    rssMax = Math.max(rssMax, ...rss);
    if (low <= 0 || a.exhaustedDrops > 0) poolOk = false;
    const first = a.samples[0];
    const last = a.samples[a.samples.length - 1];
    out.push(`  agent ${a.node} pid ${a.pid}: ${a.samples.length} samples over ${first && last ? last.t - first.t : 0} s, RSS min ${Math.min(...rss).toFixed(1)} / max ${Math.max(...rss).toFixed(1)} MB`
      + ` (first ${first?.rssMB.toFixed(1)}, last ${last?.rssMB.toFixed(1)}); pool ${a.poolCapacity} slots, in use max ${inUse}, lowest free ${low}; pool/exhausted drops ${a.exhaustedDrops}; TUN queue drops ${a.tunQueueDrops}`);
    const other = Object.entries(a.drops).filter(([k]) => k !== 'pool/exhausted' && !k.startsWith('tun-ipv4/ipv6'));
    if (other.length > 0) out.push(`    drops: ${other.map(([k, v]) => `${k}=${v}`).join(' ')}`);
  }
  const rcvbuf = Object.entries(r.udpRcvbufErrors);
  if (rcvbuf.length > 0) {
    out.push(`  UDP receive-buffer drops per node (kernel): ${rcvbuf.map(([n, v]) => {
      const split = r.udpSocketDrops[n];
      return `${n}=${v}${split ? ` (agent's underlay socket ${split.vxtun}, application sockets ${split.applications})` : ''}`;
    }).join(', ')}`);
  }
  const tunDrops = r.agents.reduce((sum, a) => sum + a.tunQueueDrops, 0);
  const agentSocketDrops = Object.values(r.udpSocketDrops).reduce((sum, d) => sum + d.vxtun, 0);
  const appSocketDrops = Object.values(r.udpSocketDrops).reduce((sum, d) => sum + d.applications, 0);
  out.push(`  where packets were dropped: TUN queues (agent not reading in time) ${tunDrops}, agents' underlay sockets ${agentSocketDrops}, application sockets (outside vxtun) ${appSocketDrops}`);
  const noSamples = r.agents.length === 0;
  out.push('targets');
  out.push(verdict(r.error === null && r.lostOutsideWindows === 0, 'packets lost outside leave windows, end to end (target 0)', `${r.lostOutsideWindows}`
    + ` (pings ${r.pings.reduce((s, p) => s + p.lostOutside, 0)} of ${r.pings.reduce((s, p) => s + p.sent, 0)}, udp ${r.udp?.lost ?? 'n/a'} of ${r.udp?.sent ?? 'n/a'})`));
  out.push(verdict(r.error === null && r.lostByOverlay === 0, 'of them lost by the overlay, not at the receiving application\'s socket (target 0)', `${r.lostByOverlay}`));
  out.push(verdict(!noSamples && rssMax < RSS_TARGET_MB, `agent RSS (target < ${RSS_TARGET_MB} MB)`, noSamples ? 'no samples' : `max ${rssMax.toFixed(1)} MB over ${r.agents.length} agent processes`));
  out.push(verdict(!noSamples && poolOk, 'buffer pool never exhausted (lowest free > 0, no pool/exhausted drops)', noSamples ? 'no samples'
    : r.agents.map((a) => `${a.node}/${a.pid}: lowest free ${Math.min(...a.samples.map((s) => s.poolLowWater))}, exhausted ${a.exhaustedDrops}`).join('; ')));
  return out.join('\n');
}
