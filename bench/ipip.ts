// IP-in-IP beside VXLAN, side by side in one run: vxtun agents at both ends of a fresh two-node lab per variant,
// one iperf3 TCP stream n1 -> n2, variants interleaved round by round (this machine is noisy: only ratios measured
// together mean something). Per run: Gbit/s, retransmits, both agents' CPU seconds per Gbit, and with --strace the
// system calls of the sending and receiving agents (strace -c -f on each, which slows them: figures from a run with
// --strace are for the counts, not the speed; --perf: `perf record` of each agent, hottest symbols). Run as root:
//   node -r tsx/cjs bench/ipip.ts [--rounds 3] [--seconds 5] [--strace | --perf] [--gro] [--only vxlan,ipip,ipip-plain]
// Variants: vxlan (default flags), ipip (default flags), ipip-plain (--ipip-segment-batch off: the raw path before the
// native segment batch, for before/after), ipip-b128 (--batch 128: twice the recvmmsg/sendmmsg batch).
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import type { AgentStatus } from '../src/control/agent';
import { fetchStatus } from '../src/control/status-server';
import { runIperf } from '../src/lab/iperf';
import { Overlay } from '../src/lab/overlay';
import { cpuSeconds } from '../src/lab/proc';
import { createLab } from '../src/lab/topology';
import { formatIPv4 } from '../src/wire/address';

interface Variant {
  name: string;
  backend: 'vxlan' | 'ipip';
  flags: string[];
}

const VARIANTS: Variant[] = [
  { name: 'vxlan', backend: 'vxlan', flags: [] },
  { name: 'ipip', backend: 'ipip', flags: [] },
  { name: 'ipip-plain', backend: 'ipip', flags: ['--ipip-segment-batch', 'off'] },
  { name: 'ipip-b128', backend: 'ipip', flags: ['--batch', '128'] },
];

interface Run {
  variant: string;
  gbps: number;
  retransmits: number | null;
  agentCpuSeconds: number;
  /** Per agent (sender, receiver): user and system CPU seconds during the run. */
  split: [number, number][];
  /** The receiving agent's mean recvmmsg batch and packets per TUN write are not counted; its mean inbound batch is. */
  receiverMeanBatch: number | null;
  syscalls: string[];
}

/** User and system CPU seconds of `pid` so far (/proc/PID/stat fields 14 and 15). */
function userSystem(pid: number): [number, number] {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return [Number(fields[11]) / 100, Number(fields[12]) / 100];
}

/** Kernel functions whose inclusive share says where a forwarding agent's system time goes. */
const PERF_PATHS = [
  'raw_sendmsg', 'udp_sendmsg', 'udp_send_skb', '__ip_append_data', 'ip_finish_output2', 'veth_xmit', 'net_rx_action', 'br_handle_frame',
  'ip_rcv', 'ip_local_deliver_finish', 'raw_rcv', 'udp_rcv', '__sys_recvmmsg', 'tun_get_user', 'tun_do_read', 'csum_partial_copy_generic',
];

/** The hottest symbols of a `perf record -g` file by self time, then the inclusive share of PERF_PATHS. */
function perfTop(file: string): string[] {
  const report = (children: boolean): string[] =>
    execFileSync('perf', ['report', '-i', file, '--stdio', children ? '--children' : '--no-children', '--sort', 'symbol', '-g', 'none'], { encoding: 'utf8', maxBuffer: 256 << 20 })
      .split('\n')
      .filter((l) => /^\s+\d+\.\d+%/.test(l))
      .map((l) => l.trim().replace(/\s+/g, ' '));
  const self = report(false).slice(0, 10);
  const inclusive = report(true)
    .map((l) => /^(\d+\.\d+)%.*\] (\S+)/.exec(l))
    .filter((m): m is RegExpExecArray => m !== null && PERF_PATHS.includes(m[2]))
    .map((m) => `${m[2]} ${m[1]}%`);
  return [`self: ${self.join(', ')}`, `inclusive: ${inclusive.join(', ')}`];
}

function arg(argv: string[], name: string, fallback: string): string {
  const i = argv.indexOf(name);
  return i >= 0 && i + 1 < argv.length ? argv[i + 1] : fallback;
}

/** The top lines of `strace -c` output: calls by system call. */
function straceTop(text: string): string[] {
  const lines = text.split('\n').filter((l) => /^\s*\d/.test(l));
  return lines.slice(0, 6).map((l) => l.trim().split(/\s+/)).map((f) => `${f[f.length - 1]} ${f[3]} calls${f.length === 6 && f[4] ? ` (${f[4]} errors)` : ''}`);
}

async function runOnce(variant: Variant, seconds: number, strace: boolean, gro: boolean, perf: boolean): Promise<Run> {
  const lab = await createLab({ name: `vxt-ipb${process.pid}`, nodes: 2 });
  let overlay: Overlay | undefined;
  const tracers: { proc: ChildProcess; out: string; done: Promise<void> }[] = [];
  try {
    overlay = await Overlay.create(lab, { backend: variant.backend });
    const [n1, n2] = lab.nodes;
    // A real NIC has GRO on by default; a veth only when asked (then it coalesces IP-in-IP TCP, af_inet.c ipip_offload).
    if (gro) for (const node of lab.nodes) await lab.exec(node, 'ethtool', ['-K', node.underlayDev, 'gro', 'on']);
    for (const node of lab.nodes) await overlay.startAgent(node, ['--no-ip-masq', ...variant.flags]);
    await overlay.waitForRoutes(n1, 1);
    await overlay.waitForRoutes(n2, 1);
    const target = formatIPv4((await overlay.subnetOf(n2)).address);
    const pids = [...overlay.agents.values()].map((a) => a.process.pid!);
    if (strace || perf) {
      for (const pid of pids) {
        const out = `/tmp/vxtun-ipip-bench-${process.pid}-${pid}.${perf ? 'perf' : 'strace'}`;
        const args = perf ? ['record', '-q', '-g', '-o', out, '-p', String(pid)] : ['-c', '-f', '-o', out, '-p', String(pid)];
        const proc = spawn(perf ? 'perf' : 'strace', args, { stdio: 'ignore' });
        tracers.push({ proc, out, done: new Promise((resolve) => proc.once('exit', () => resolve())) });
      }
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
    const before = pids.map(cpuSeconds);
    const splitBefore = pids.map(userSystem);
    const tcp = await runIperf(lab, { server: n2, client: n1, address: target, seconds });
    const cpu = pids.map((pid, i) => cpuSeconds(pid) - before[i]).reduce((a, b) => a + b, 0);
    const split = pids.map((pid, i): [number, number] => {
      const [user, system] = userSystem(pid);
      return [user - splitBefore[i][0], system - splitBefore[i][1]];
    });
    const syscalls: string[] = [];
    for (const [i, t] of tracers.entries()) {
      t.proc.kill('SIGINT');
      await t.done;
      const top = perf ? perfTop(t.out) : straceTop(readFileSync(t.out, 'utf8'));
      syscalls.push(`${i === 0 ? 'sender' : 'receiver'}: ${top.join('\n      ')}`);
      rmSync(t.out, { force: true });
    }
    const status = (await fetchStatus(overlay.agents.get(n2.name)!.statusSocket)) as AgentStatus;
    const receiverMeanBatch = (status.counters as { meanBatch?: { inbound: number } } | undefined)?.meanBatch?.inbound ?? null;
    return { variant: variant.name, receiverMeanBatch, gbps: tcp.gbitPerSecond, retransmits: tcp.retransmits, agentCpuSeconds: cpu, split, syscalls };
  } finally {
    for (const t of tracers) if (t.proc.exitCode === null) t.proc.kill('SIGKILL');
    await overlay?.close();
    await lab.destroy();
  }
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const rounds = Number(arg(argv, '--rounds', '3'));
  const seconds = Number(arg(argv, '--seconds', '5'));
  const strace = argv.includes('--strace');
  const gro = argv.includes('--gro');
  const perf = argv.includes('--perf');
  const only = arg(argv, '--only', '').split(',').filter((s) => s !== '');
  const variants = only.length > 0 ? VARIANTS.filter((v) => only.includes(v.name)) : VARIANTS;
  const runs: Run[] = [];
  for (let round = 1; round <= rounds; round++) {
    for (const variant of variants) {
      try {
        const run = await runOnce(variant, seconds, strace, gro, perf);
        runs.push(run);
        const perGbit = run.agentCpuSeconds / (run.gbps * seconds);
        process.stdout.write(`round ${round} ${variant.name.padEnd(11)} ${run.gbps.toFixed(2)} Gbit/s, retransmits ${run.retransmits}, agents ${perGbit.toFixed(3)} CPU s/Gbit; user/sys s: sender ${run.split[0].map((x) => x.toFixed(2)).join('/')}, receiver ${run.split[1].map((x) => x.toFixed(2)).join('/')}; receiver mean recv batch ${run.receiverMeanBatch?.toFixed(1)}\n`);
        for (const line of run.syscalls) process.stdout.write(`    ${line}\n`);
      } catch (error) {
        process.stdout.write(`round ${round} ${variant.name}: failed: ${error instanceof Error ? error.message : String(error)}\n`);
      }
    }
  }
  const medians = new Map(variants.map((v) => [v.name, median(runs.filter((r) => r.variant === v.name).map((r) => r.gbps))]));
  process.stdout.write(`medians over ${rounds} interleaved rounds of ${seconds} s:\n`);
  const vxlan = medians.get('vxlan');
  for (const [name, value] of medians) {
    const ratio = vxlan !== undefined && name !== 'vxlan' ? `  (${(value / vxlan).toFixed(2)}x vxlan)` : '';
    process.stdout.write(`  ${name.padEnd(11)} ${value.toFixed(2)} Gbit/s${ratio}\n`);
  }
}

main().catch((error: unknown) => {
  process.stderr.write(`ipip bench failed: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exitCode = 1;
});
