// `npm run bench [-- flags]`: runs the suites, prints one table per suite, and writes bench/results/<timestamp>.json
// (every round's every figure, CPU and load included) and bench/results/throughput.svg. Must run as root.
//
//   --only micro|e2e|scale|soak|bgp   one suite (default micro, e2e and scale; soak and bgp only when asked for)
//   --rounds N          e2e interleaved rounds, default 3 (each round runs every figure on every path, in the fixed
//                       path order kernel-vxlan, vxtun-vxlan (+ its variants), vxtun-ipip, mixed, vxtun-vxlan-plain,
//                       underlay); figures are medians over the rounds, ratios taken per round. Also bgp's runs.
//                       --runs N is the old name.
//   --seconds S         seconds per iperf3 run (default 5)
//   --paths a,b         e2e paths (default all six; see bench/options.ts)
//   --figures a,b       e2e figures: tcp1, tcp1r, tcp1v6, tcp4, udp64, udp1400, ping, ping-busy (default all; tcp1r,
//                       the reverse direction, runs only on mixed unless named here; tcp1v6, TCP over IPv6 pod
//                       addresses and an IPv6 underlay, only on kernel-vxlan and vxtun-vxlan(-plain), whose labs are
//                       then dual-stack: flannel-v6.<VNI> devices / agents with --public-ipv6)
//   --variant NAME=FLAGS   adds path vxtun-vxlan+NAME whose agents get FLAGS (shell-quoted), interleaved like the
//                       others, e.g. --variant uring="--tun-io uring"; BASE+NAME=FLAGS varies another agent path
//                       (vxtun-ipip, mixed, vxtun-vxlan-plain). Repeatable.
//   --flood S           heap-sampling 64 B flood per path with a receiving agent, after the rounds (default 30; 0: none)
//   --ping-count N      echo requests per ping figure and round (default 50, every 50 ms)
//   --soak-minutes N    length of --only soak (default 10)
//
// Default e2e (6 paths, 3 rounds, 5 s runs, 30 s floods): about 15 minutes on the 2-core machine. A before/after of
// one lever: npm run bench -- --only e2e --paths kernel-vxlan,vxtun-vxlan --figures tcp1,udp64,ping --variant uring="--tun-io uring"
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import { barChartSvg } from './chart';
import { type E2eResult, type PathResult, runE2e } from './e2e';
import { backgroundNote, comparisonPairs, comparisonTable, cpuTable, failureNotes, figuresTable, roundsTable, table } from './e2e-report';
import { type MicroResult, runMicro } from './micro';
import { type BenchArgs, HelpRequested, parseBenchArgs } from './options';
import { targetsTable } from './targets';
import { type ScaleResult, formatScale, runScale } from './scale';
import { type SoakResult, formatSoak, runSoak } from './soak';
import { type BgpBenchResult, formatBgpBench, runBgpBench } from './bgp';

const RESULTS_DIR = join(__dirname, 'results');

function microTable(results: MicroResult[]): string {
  const header = ['suite', 'case', 'ops/s', '±%', 'packets/s'];
  const rows = results.map((r) => [
    r.suite, r.name, Math.round(r.opsPerSecond).toLocaleString('en-US'), r.marginPercent.toFixed(1),
    r.packetsPerOp > 1 ? Math.round(r.opsPerSecond * r.packetsPerOp).toLocaleString('en-US') : '',
  ]);
  return table(header, rows);
}

function throughputChart(results: PathResult[]): string {
  return barChartSvg({
    title: 'TCP throughput per path (iperf3, median over interleaved rounds)',
    unit: 'Gbit/s',
    series: ['1 stream', '4 streams'],
    groups: results.map((r) => ({ label: r.path, values: [r.figures.tcp1?.median ?? null, r.figures.tcp4?.median ?? null] })),
  });
}

function e2eReport(e2e: E2eResult): string[] {
  const load = e2e.loadAverageStart.map((l) => l.toFixed(2)).join(' ');
  const has = (base: string): boolean => e2e.paths.some((p) => p.base === base);
  const iperf = e2e.paths.some((p) => ['tcp1', 'tcp1r', 'tcp4', 'udp64', 'udp1400'].some((f) => p.figures[f as 'tcp1'] !== undefined));
  const legend = [
    'medians over the rounds; * = some rounds failed',
    has('vxtun-vxlan-plain') ? 'vxtun-vxlan-plain = agents with --no-offload (one packet per system call)' : '',
    e2e.paths.some((p) => p.figures.tcp1v6 !== undefined)
      ? 'TCP6 = tcp1v6: IPv6 TCP x1 between the nodes\' IPv6 lease addresses (flannel-v6.1 devices / dual-stack agents) over the IPv6 underlay 2001:db8:1::/64'
      : '',
    has('mixed') ? 'mixed = vxtun agent (client) to a kernel VXLAN device programmed as flannel does (server); rev = the server sends' : '',
    e2e.paths.some((p) => p.figures['ping-busy'] !== undefined) ? 'busy = ping with a nice-19 spinner per core (no CPU wake-up latency)' : '',
    ...e2e.paths.filter((p) => p.agentArgs.length > 0).map((p) => `${p.path} = ${p.base} with agents + ${p.agentArgs.join(' ')}`),
  ].filter((l) => l !== '');
  const sections: string[][] = [[
    `end to end (2 namespaces per path on a bridge, MTU 1500; ${e2e.rounds} interleaved round(s) x ${e2e.seconds} s per run; `
      + `${(e2e.durationSeconds / 60).toFixed(1)} min; load average at start ${load})`,
    figuresTable(e2e.paths),
    ...legend,
  ]];
  if (iperf) {
    sections.push([
      'machine CPU seconds (all CPUs, non-idle, /proc/stat) per Gbit (TCP) or per million datagrams received (UDP), medians',
      cpuTable(e2e.paths),
      backgroundNote(e2e.paths),
    ]);
  }
  if (comparisonPairs(e2e.paths).length > 0) {
    sections.push(['comparisons: median of the per-round ratios (ratio of the medians); ping: us added, per round (of medians)', comparisonTable(e2e.paths)]);
  }
  sections.push(['every round (machine CPU s per unit in brackets)', roundsTable(e2e.paths, e2e.rounds), ...failureNotes(e2e.paths).map((n) => `! ${n}`)]);
  return sections.flatMap((section, i) => (i === 0 ? section : ['', ...section]));
}

async function main(): Promise<number> {
  let args: BenchArgs;
  try {
    args = parseBenchArgs(process.argv.slice(2));
  } catch (error) {
    if (error instanceof HelpRequested) {
      process.stdout.write(error.text);
      return 0;
    }
    process.stderr.write(`${error instanceof Error ? error.message : String(error)}\n`);
    return 1;
  }
  if (process.getuid?.() !== 0) {
    process.stderr.write('vxtun bench must run as root: the end-to-end suite makes network namespaces, TUN devices and raw sockets.\n'
      + 'Run it as root, e.g. sudo npm run bench\n');
    return 1;
  }
  const log = (line: string): void => { process.stderr.write(`${line}\n`); };
  const startedAt = new Date();
  const loadAverageStart = loadavg();
  let micro: MicroResult[] | undefined;
  let e2e: E2eResult | undefined;
  let scale: ScaleResult | undefined;
  let soak: SoakResult | undefined;
  if (args.only === undefined || args.only === 'micro') micro = await runMicro({ log });
  if (args.only === undefined || args.only === 'e2e') {
    e2e = await runE2e({
      rounds: args.rounds, seconds: args.seconds, paths: args.paths, figures: args.figures, figuresGiven: args.figuresGiven,
      floodSeconds: args.flood, pingCount: args.pingCount, log,
    });
  }
  if (args.only === undefined || args.only === 'scale') scale = await runScale({ log });
  if (args.only === 'soak') soak = await runSoak({ minutes: args.soakMinutes, log });
  let bgp: BgpBenchResult | undefined;
  if (args.only === 'bgp') bgp = await runBgpBench({ runs: args.rounds, log });

  const machine = `${cpus().length} x ${cpus()[0]?.model ?? 'unknown CPU'}, Node ${process.version}`;
  const command = `npm run bench --${process.argv.slice(2).map((a) => ` ${/[\s"']/.test(a) ? JSON.stringify(a) : a}`).join('')}`;
  const out: string[] = [`vxtun bench, ${startedAt.toISOString()}, ${machine}`, command];
  if (e2e) out.push('', ...e2eReport(e2e));
  if (e2e) out.push('', 'targets (issue 11; ratios are medians of per-round ratios, ratio of medians beside)', targetsTable(e2e.paths));
  if (scale) out.push('', formatScale(scale));
  if (soak) out.push('', formatSoak(soak));
  if (bgp) out.push('', formatBgpBench(bgp));
  if (micro) out.push('', 'micro (benny; encapsulation through the Encapsulation objects, not the fakes)', microTable(micro));
  process.stdout.write(`${out.join('\n')}\n`);

  mkdirSync(RESULTS_DIR, { recursive: true });
  const file = join(RESULTS_DIR, `${startedAt.toISOString().replace(/[:.]/g, '-')}.json`);
  const json = { startedAt, machine, command, args, loadAverageStart, e2e: e2e ?? null, micro: micro ?? null, scale: scale ?? null, soak: soak ?? null, bgp: bgp ?? null };
  writeFileSync(file, `${JSON.stringify(json, null, 2)}\n`);
  const written = [file];
  if (e2e) {
    const svg = join(RESULTS_DIR, 'throughput.svg');
    writeFileSync(svg, throughputChart(e2e.paths));
    written.push(svg);
  }
  process.stdout.write(`\nwrote ${written.join(', ')}\n`);
  const failed = (e2e?.paths ?? []).some((r) => r.error !== null) || (soak !== undefined && soak.error !== null);
  return failed ? 1 : 0;
}

main().then((code) => { process.exitCode = code; }, (error: unknown) => {
  process.stderr.write(`bench failed: ${error instanceof Error ? error.stack : String(error)}\n`);
  process.exitCode = 1;
});
