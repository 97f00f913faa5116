// The e2e suite's results as text tables: medians over the rounds, machine CPU cost, comparisons of paths (median of
// the per-round comparisons beside the comparison of medians), and every round's value.
import type { FigureResult, PathResult } from './e2e';
import { type FigureName, FIGURES, TCP_FIGURES, UDP_FIGURES } from './options';
import type { Comparison } from './stats';
import { comparePaths } from './targets';

export function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, c) => Math.max(h.length, ...rows.map((row) => (row[c] ?? '').length)));
  const line = (cells: string[]): string => cells.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!))).join('  ').trimEnd();
  return [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}

function fixed(value: number | null | undefined, digits: number): string {
  return value === null || value === undefined || !Number.isFinite(value) ? 'n/a' : value.toFixed(digits);
}

const LABEL: Record<FigureName, string> = {
  tcp1: 'TCP x1 Gbit/s', tcp1r: 'TCP x1 rev Gbit/s', tcp1v6: 'TCP6 x1 Gbit/s', tcp4: 'TCP x4 Gbit/s', udp64: 'UDP 64 B kpps', udp1400: 'UDP 1400 B kpps',
  ping: 'ping p50/p99 us', 'ping-busy': 'busy p50 us',
};
const SCALE: Record<FigureName, [number, number]> = {
  tcp1: [1, 2], tcp1r: [1, 2], tcp1v6: [1, 2], tcp4: [1, 2], udp64: [1e-3, 1], udp1400: [1e-3, 1], ping: [1, 0], 'ping-busy': [1, 0],
};

function measured(results: readonly PathResult[]): FigureName[] {
  return FIGURES.filter((f) => results.some((r) => r.figures[f] !== undefined));
}

function failures(f: FigureResult): number {
  return f.samples.filter((s) => s.value === null).length;
}

function valueCell(f: FigureResult | undefined): string {
  if (f === undefined) return '';
  if (f.median === null) return 'FAIL';
  const [scale, digits] = SCALE[f.figure];
  const main = (f.median * scale).toFixed(digits) + (f.figure === 'ping' ? `/${fixed(f.p99Median, 0)}` : '');
  return main + (failures(f) > 0 ? '*' : '');
}

/** Medians over the rounds of every figure, one row per path. */
export function figuresTable(results: readonly PathResult[]): string {
  const figures = measured(results);
  const rows = results.map((r) => [r.path + (r.error ? ' (FAILED)' : ''), ...figures.map((f) => valueCell(r.figures[f]))]);
  return table(['path', ...figures.map((f) => LABEL[f])], rows);
}

/** Machine CPU seconds per Gbit (TCP) and per million packets (UDP), medians over the rounds; agents' CPU and RSS. */
export function cpuTable(results: readonly PathResult[]): string {
  const figures = measured(results).filter((f) => TCP_FIGURES.includes(f) || UDP_FIGURES.includes(f));
  const unit = (f: FigureName): string => `${f} ${TCP_FIGURES.includes(f) ? 's/Gbit' : 's/Mpkt'}`;
  const rows = results.map((r) => [
    r.path,
    ...figures.map((f) => (r.figures[f] === undefined ? '' : fixed(r.figures[f]!.cpuPerUnitMedian, 3))),
    r.figures.tcp1?.agentCpuMedian === undefined ? '' : fixed(r.figures.tcp1.agentCpuMedian, 2),
    r.agentPeakRssBytes === null ? '' : (r.agentPeakRssBytes / 2 ** 20).toFixed(1),
  ]);
  return table(['path', ...figures.map(unit), 'agents CPU s (tcp1)', 'agent peak RSS MB'], rows);
}

/**
 * How busy the machine was, with nothing of ours running, just before the iperf3 runs: the machine CPU figures count
 * that load too, so they mean little when it is high (a saturated 2-core machine gives ~2 s CPU per second whatever runs).
 */
export function backgroundNote(results: readonly PathResult[]): string {
  const shares = results.flatMap((r) => Object.values(r.figures).flatMap((f) => f!.samples.flatMap((s) => (s.backgroundBusy === null ? [] : [s.backgroundBusy]))));
  if (shares.length === 0) return '';
  const sorted = [...shares].sort((a, b) => a - b);
  const pct = (v: number): string => `${(v * 100).toFixed(0)}%`;
  const warning = sorted[sorted.length >> 1]! > 0.2 ? ' -- others were using the machine: the CPU figures include their load' : '';
  return `machine busy before the runs (ours idle): median ${pct(sorted[sorted.length >> 1]!)}, max ${pct(sorted[sorted.length - 1]!)}${warning}`;
}

/** The pairs compared: every other path against kernel-vxlan, each variant against its base, IP-in-IP against VXLAN. */
export function comparisonPairs(results: readonly PathResult[]): Array<[PathResult, PathResult]> {
  const ok = results.filter((r) => r.error === null);
  const byName = (name: string): PathResult | undefined => ok.find((r) => r.path === name);
  const pairs: Array<[PathResult, PathResult]> = [];
  const kernel = byName('kernel-vxlan');
  if (kernel) for (const r of ok) if (r !== kernel && r.path !== 'underlay') pairs.push([r, kernel]);
  for (const r of ok) {
    const base = r.agentArgs.length > 0 ? byName(r.base) : undefined;
    if (base) pairs.push([r, base]);
  }
  const vxlan = byName('vxtun-vxlan');
  for (const r of ok.filter((x) => x.base === 'vxtun-ipip')) if (vxlan) pairs.push([r, vxlan]);
  return pairs;
}

/**
 * Path A against path B for every figure both measured: ratio A / B (for ping, the us A adds over B), as "median of
 * the per-round comparisons (comparison of the medians)"; then the same for machine CPU per unit of tcp1 and udp64.
 */
export function comparisonTable(results: readonly PathResult[]): string {
  const figures = measured(results);
  const cpuFigures = (['tcp1', 'udp64'] as const).filter((f) => figures.includes(f));
  const cell = (a: PathResult, b: PathResult, f: FigureName, how: Comparison, quantity: 'value' | 'cpu'): string => {
    if (a.figures[f] === undefined || b.figures[f] === undefined) return '';
    const c = comparePaths(a, b, f, how, quantity);
    const digits = how === 'difference' ? 0 : 2;
    const sign = (v: number | null): string => (how === 'difference' && v !== null && v >= 0 ? '+' : '') + fixed(v, digits);
    return `${sign(c.medianOfRounds)} (${sign(c.ofMedians)})`;
  };
  const rows = comparisonPairs(results).map(([a, b]) => [
    `${a.path} / ${b.path}`,
    ...figures.map((f) => cell(a, b, f, f === 'ping' || f === 'ping-busy' ? 'difference' : 'ratio', 'value')),
    ...cpuFigures.map((f) => cell(a, b, f, 'ratio', 'cpu')),
  ]);
  const header = ['paths', ...figures.map((f) => (f === 'ping' ? 'ping p50 added us' : f === 'ping-busy' ? 'busy p50 added us' : f)), ...cpuFigures.map((f) => `CPU/unit ${f}`)];
  return table(header, rows);
}

/** Every round's value: one row per figure and path. */
export function roundsTable(results: readonly PathResult[], rounds: number): string {
  const rows: string[][] = [];
  for (const f of measured(results)) {
    const [scale, digits] = SCALE[f];
    for (const r of results) {
      const fig = r.figures[f];
      if (fig === undefined) continue;
      const cells = Array.from({ length: rounds }, (_, i) => {
        const s = fig.samples.find((x) => x.round === i + 1);
        if (s === undefined) return '';
        const cpu = s.cpuPerUnit === null ? '' : ` [${s.cpuPerUnit.toFixed(3)}]`;
        return s.value === null ? 'FAIL' : `${(s.value * scale).toFixed(digits)}${cpu}`;
      });
      rows.push([`${LABEL[f]}  ${r.path}`, ...cells]);
    }
  }
  return table(['figure  path', ...Array.from({ length: rounds }, (_, i) => `round ${i + 1}`)], rows);
}

/** Lines for every failed run, setup and ping with missing replies. */
export function failureNotes(results: readonly PathResult[]): string[] {
  const notes: string[] = [];
  for (const r of results) {
    if (r.error) notes.push(`${r.path}: ${r.error}`);
    for (const f of Object.values(r.figures)) {
      for (const s of f!.samples) {
        if (s.error) notes.push(`${r.path} ${f!.figure} round ${s.round}: ${s.error}`);
        else if (s.ping && s.ping.received < s.ping.transmitted) notes.push(`${r.path} ${f!.figure} round ${s.round}: ${s.ping.received}/${s.ping.transmitted} replies`);
      }
    }
  }
  return notes;
}
