// `npm run bench [-- --only micro|e2e|scale|soak|bgp] [--runs N] [--seconds S] [--soak-minutes N]`: runs the suites, prints one table per suite, and
// writes bench/results/<timestamp>.json and bench/results/throughput.svg.
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { barChartSvg } from './chart';
import { type PathResult, type Figure, PATHS, runE2e } from './e2e';
import { type MicroResult, runMicro } from './micro';
import { targetsTable } from './targets';
import { type ScaleResult, formatScale, runScale } from './scale';
import { type SoakResult, formatSoak, runSoak } from './soak';
import { type BgpBenchResult, formatBgpBench, runBgpBench } from './bgp';

interface Args {
  /** soak and bgp (a 50-node lab) run only when asked for: not part of the default run. */
  only: 'micro' | 'e2e' | 'scale' | 'soak' | 'bgp' | undefined;
  runs: number;
  seconds: number;
  flood: number;
  soakMinutes: number;
}

const USAGE = 'usage: npm run bench -- [--only micro|e2e|scale|soak|bgp] [--runs N (default 3)] [--seconds S (default 5)] [--flood S (default 30)]\n'
  + '       [--soak-minutes N (default 10)]   (soak and bgp run only when asked for: --only soak, --only bgp)';
const RESULTS_DIR = join(__dirname, 'results');

function parseArgs(argv: readonly string[]): Args {
  const args: Args = { only: undefined, runs: 3, seconds: 5, flood: 30, soakMinutes: 10 };
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i]!;
    const value = argv[i + 1];
    if (flag === '--help' || flag === '-h') throw new Error(USAGE);
    if (value === undefined) throw new Error(`${flag} needs a value\n${USAGE}`);
    i++;
    if (flag === '--only') {
      if (value !== 'micro' && value !== 'e2e' && value !== 'scale' && value !== 'soak' && value !== 'bgp') throw new Error(`--only must be micro, e2e, scale, soak or bgp, got "${value}"\n${USAGE}`);
      args.only = value;
    } else if (flag === '--runs') {
      args.runs = Number(value);
      if (!Number.isInteger(args.runs) || args.runs < 1 || args.runs > 50) throw new Error(`--runs must be an integer 1-50, got "${value}"`);
    } else if (flag === '--flood') {
      args.flood = Number(value);
      if (!(args.flood >= 1 && args.flood <= 300)) throw new Error(`--flood must be 1-300 seconds, got "${value}"`);
    } else if (flag === '--soak-minutes') {
      args.soakMinutes = Number(value);
      if (!(args.soakMinutes >= 0.5 && args.soakMinutes <= 24 * 60)) throw new Error(`--soak-minutes must be 0.5 to 1440, got "${value}"`);
    } else if (flag === '--seconds') {
      args.seconds = Number(value);
      if (!(args.seconds >= 1 && args.seconds <= 120)) throw new Error(`--seconds must be 1-120, got "${value}"`);
    } else {
      throw new Error(`unknown option ${flag}\n${USAGE}`);
    }
  }
  return args;
}

function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, c) => Math.max(h.length, ...rows.map((row) => (row[c] ?? '').length)));
  const line = (cells: string[]): string => cells.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!))).join('  ');
  return [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}

function fixed(value: number | null, digits: number): string {
  return value === null ? 'n/a' : value.toFixed(digits);
}

function figureCell(figure: Figure, scale: number, digits: number): string {
  if (figure.median === null) return figure.errors.length > 0 ? 'FAIL' : 'n/a';
  return (figure.median * scale).toFixed(digits) + (figure.errors.length > 0 ? '*' : '');
}

/** The numbers of the e2e table, per row, for ratios: tcp1, tcp4, udp64, udp1400, p50, p99. */
function figures(result: PathResult): Array<number | null> {
  return [result.tcp1Gbps.median, result.tcp4Gbps.median, result.udp64Pps.median, result.udp1400Pps.median, result.ping.p50Us, result.ping.p99Us];
}

function e2eTable(results: PathResult[]): string {
  const header = ['path', 'TCP x1 Gbit/s', 'TCP x4 Gbit/s', 'UDP 64 B kpps', 'UDP 1400 B kpps', 'ping p50/p99 us', 'p50 busy cores us', 'agent CPU s (TCP x1)', 'agent peak RSS MB'];
  const rows = results.map((r) => [
    r.path + (r.error ? ' (FAILED)' : ''),
    figureCell(r.tcp1Gbps, 1, 2),
    figureCell(r.tcp4Gbps, 1, 2),
    figureCell(r.udp64Pps, 1e-3, 1),
    figureCell(r.udp1400Pps, 1e-3, 1),
    `${fixed(r.ping.p50Us, 0)}/${fixed(r.ping.p99Us, 0)}`,
    fixed(r.pingBusyP50Us, 0),
    fixed(r.agentCpuSecondsTcp1, 2),
    r.agentPeakRssBytes === null ? 'n/a' : (r.agentPeakRssBytes / 2 ** 20).toFixed(1),
  ]);
  const kernel = results.find((r) => r.path === 'kernel-vxlan');
  if (kernel) {
    const base = figures(kernel);
    for (const r of results.filter((x) => x.path.startsWith('vxtun-'))) {
      const ratio = figures(r).map((v, i) => (v === null || base[i] === null || base[i] === 0 ? null : v / base[i]!));
      rows.push([`${r.path} / kernel`, fixed(ratio[0]!, 2), fixed(ratio[1]!, 2), fixed(ratio[2]!, 2), fixed(ratio[3]!, 2), `${fixed(ratio[4]!, 2)}/${fixed(ratio[5]!, 2)}`, '', '', '']);
    }
  }
  const notes: string[] = [];
  for (const r of results) {
    if (r.error) notes.push(`${r.path}: ${r.error}`);
    for (const [name, figure] of [['TCP x1', r.tcp1Gbps], ['TCP x4', r.tcp4Gbps], ['UDP 64', r.udp64Pps], ['UDP 1400', r.udp1400Pps]] as const) {
      for (const error of figure.errors) notes.push(`${r.path} ${name}: ${error}`);
    }
    if (r.ping.error) notes.push(`${r.path} ping: ${r.ping.error}`);
    else if (!r.error && r.ping.received < r.ping.transmitted) notes.push(`${r.path} ping: ${r.ping.received}/${r.ping.transmitted} replies`);
  }
  const legend = 'medians of the runs; * = some runs failed; ratios are vxtun / kernel VXLAN (for ping, > 1 is slower);\n'
    + 'vxtun-vxlan-plain = agents with --no-offload; "busy cores" = ping with a nice-19 spinner per core (no CPU wake-ups)';
  return [table(header, rows), legend, ...notes.map((n) => `! ${n}`)].join('\n');
}

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
    title: 'TCP throughput per path (iperf3, median)',
    unit: 'Gbit/s',
    series: ['1 stream', '4 streams'],
    groups: results.map((r) => ({ label: r.path, values: [r.tcp1Gbps.median, r.tcp4Gbps.median] })),
  });
}

async function main(): Promise<number> {
  let args: Args;
  try {
    args = parseArgs(process.argv.slice(2));
  } catch (error) {
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
  let micro: MicroResult[] | undefined;
  let e2e: PathResult[] | undefined;
  let scale: ScaleResult | undefined;
  let soak: SoakResult | undefined;
  if (args.only === undefined || args.only === 'micro') micro = await runMicro({ log });
  if (args.only === undefined || args.only === 'e2e') e2e = await runE2e({ runs: args.runs, seconds: args.seconds, floodSeconds: args.flood, log }, PATHS);
  if (args.only === undefined || args.only === 'scale') scale = await runScale({ log });
  if (args.only === 'soak') soak = await runSoak({ minutes: args.soakMinutes, log });
  let bgp: BgpBenchResult | undefined;
  if (args.only === 'bgp') bgp = await runBgpBench({ runs: args.runs, log });

  const machine = `${cpus().length} x ${cpus()[0]?.model ?? 'unknown CPU'}, Node ${process.version}`;
  const out: string[] = [`vxtun bench, ${startedAt.toISOString()}, ${machine}`];
  if (e2e) out.push('', `end to end (2 namespaces on a bridge, MTU 1500; ${args.runs} run(s) x ${args.seconds} s)`, e2eTable(e2e));
  if (e2e) out.push('', 'targets', targetsTable(e2e));
  if (scale) out.push('', formatScale(scale));
  if (soak) out.push('', formatSoak(soak));
  if (bgp) out.push('', formatBgpBench(bgp));
  if (micro) out.push('', 'micro (benny; encapsulation through the Encapsulation objects, not the fakes)', microTable(micro));
  process.stdout.write(`${out.join('\n')}\n`);

  mkdirSync(RESULTS_DIR, { recursive: true });
  const file = join(RESULTS_DIR, `${startedAt.toISOString().replace(/[:.]/g, '-')}.json`);
  writeFileSync(file, `${JSON.stringify({ startedAt, machine, args, e2e: e2e ?? null, micro: micro ?? null, scale: scale ?? null, soak: soak ?? null, bgp: bgp ?? null }, null, 2)}\n`);
  const written = [file];
  if (e2e) {
    const svg = join(RESULTS_DIR, 'throughput.svg');
    writeFileSync(svg, throughputChart(e2e));
    written.push(svg);
  }
  process.stdout.write(`\nwrote ${written.join(', ')}\n`);
  const failed = (e2e ?? []).some((r) => r.error !== null) || (soak !== undefined && soak.error !== null);
  return failed ? 1 : 0;
}

main().then((code) => { process.exitCode = code; }, (error: unknown) => {
  process.stderr.write(`bench failed: ${error instanceof Error ? error.stack : String(error)}\n`);
  process.exitCode = 1;
});
