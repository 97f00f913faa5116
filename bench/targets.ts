// The performance targets of issue 11 ("Speed, round two"), checked against one bench run: each compares two paths
// measured in the same rounds, round by round (bench/stats.ts), and says met or missed, and by how much. The median
// of the per-round comparisons is what is judged; the comparison of the medians is shown beside it.
import type { PathResult, Sample } from './e2e';
import type { FigureName } from './options';
import { type Compared, type Comparison, type RoundValue, compareRounds } from './stats';

export interface TargetCheck {
  target: string;
  /** Median of the per-round comparisons; null when not measured. */
  value: number | null;
  /** The same comparison of the two paths' medians. */
  ofMedians: number | null;
  unit: string;
  digits: number;
  /** null: not measured. */
  met: boolean | null;
  verdict: string;
}

/**
 * Judges `value` against `goal`: at least (`>=`) or at most (`<=`). A miss says by how much, in the unit and as a share
 * of the goal, e.g. "MISSED by 0.14 x kernel (23% short)".
 */
export function judge(value: number | null, goal: number, direction: '>=' | '<=', unit: string, digits: number): { met: boolean | null; verdict: string } {
  if (value === null || !Number.isFinite(value)) return { met: null, verdict: 'not measured' };
  const met = direction === '>=' ? value >= goal : value <= goal;
  if (met) return { met, verdict: 'met' };
  const gap = Math.abs(value - goal);
  const share = goal === 0 ? '' : ` (${((gap / Math.abs(goal)) * 100).toFixed(0)}% ${direction === '>=' ? 'short' : 'over'})`;
  return { met, verdict: `MISSED by ${gap.toFixed(digits)}${unit ? ` ${unit}` : ''}${share}` };
}

type Quantity = 'value' | 'cpu';

/** Each round's value of a path's figure: its measurement, or its machine CPU cost per unit. */
export function roundValues(result: PathResult | undefined, figure: FigureName, quantity: Quantity = 'value'): RoundValue[] {
  const samples: Sample[] = result?.figures[figure]?.samples ?? [];
  return samples.map((s) => ({ round: s.round, value: quantity === 'value' ? s.value : s.value === null ? null : s.cpuPerUnit }));
}

/** Compares a figure of two paths round by round. */
export function comparePaths(a: PathResult | undefined, b: PathResult | undefined, figure: FigureName, how: Comparison, quantity: Quantity = 'value'): Compared {
  return compareRounds(roundValues(a, figure, quantity), roundValues(b, figure, quantity), how);
}

function target(text: string, compared: Compared | null, goal: number, direction: '>=' | '<=', unit: string, digits: number): TargetCheck {
  const value = compared?.medianOfRounds ?? null;
  return { target: text, value, ofMedians: compared?.ofMedians ?? null, unit, digits, ...judge(value, goal, direction, unit, digits) };
}

function single(text: string, value: number | null, goal: number, direction: '>=' | '<=', unit: string, digits: number): TargetCheck {
  return { target: text, value, ofMedians: null, unit, digits, ...judge(value, goal, direction, unit, digits) };
}

/**
 * Issue 11's targets for vxtun-vxlan and each of its variants against kernel-vxlan (TCP x1 >= 0.6 x kernel, machine
 * CPU s/Gbit <= 2.0 x kernel, UDP 64 B datagrams/s >= 0.9 x kernel, ping p50 added <= 120 us); vxtun-ipip (and its
 * variants) TCP x1 >= 0.9 x vxtun-vxlan; and for every path with agents, peak RSS < 100 MB and heap growth < 5 MB
 * during the flood (DESIGN.md: nothing allocates per packet).
 */
export function targetChecks(results: readonly PathResult[]): TargetCheck[] {
  const ok = results.filter((r) => r.error === null);
  const kernel = ok.find((r) => r.path === 'kernel-vxlan');
  const vxlan = ok.find((r) => r.path === 'vxtun-vxlan');
  const checks: TargetCheck[] = [];
  const has = (r: PathResult | undefined, f: FigureName): boolean => r?.figures[f] !== undefined;
  for (const r of ok.filter((x) => x.base === 'vxtun-vxlan')) {
    if (kernel === undefined) break;
    if (has(r, 'tcp1') && has(kernel, 'tcp1')) {
      checks.push(target(`${r.path} TCP x1 >= 0.6 x kernel`, comparePaths(r, kernel, 'tcp1', 'ratio'), 0.6, '>=', 'x', 2));
      checks.push(target(`${r.path} machine CPU s/Gbit (TCP x1) <= 2.0 x kernel`, comparePaths(r, kernel, 'tcp1', 'ratio', 'cpu'), 2.0, '<=', 'x', 2));
    }
    if (has(r, 'udp64') && has(kernel, 'udp64')) {
      checks.push(target(`${r.path} UDP 64 B pps >= 0.9 x kernel`, comparePaths(r, kernel, 'udp64', 'ratio'), 0.9, '>=', 'x', 2));
    }
    if (has(r, 'ping') && has(kernel, 'ping')) {
      checks.push(target(`${r.path} ping p50 added over kernel <= 120 us`, comparePaths(r, kernel, 'ping', 'difference'), 120, '<=', 'us', 0));
    }
  }
  for (const r of ok.filter((x) => x.base === 'vxtun-ipip')) {
    if (vxlan !== undefined && has(r, 'tcp1') && has(vxlan, 'tcp1')) {
      checks.push(target(`${r.path} TCP x1 >= 0.9 x vxtun-vxlan`, comparePaths(r, vxlan, 'tcp1', 'ratio'), 0.9, '>=', 'x', 2));
    }
  }
  for (const r of ok) {
    if (r.agentPeakRssBytes !== null) checks.push(single(`${r.path} agent peak RSS < 100 MB`, r.agentPeakRssBytes / 2 ** 20, 100, '<=', 'MB', 1));
    if (r.floodHeap !== null) {
      // "Flat": the heap may breathe with GC, but does not grow with the packets (under 5 MB above its start).
      checks.push(single(`${r.path} heap growth in a ${r.floodHeap.seconds} s 64 B flood < 5 MB`, r.floodHeap.maxMb - r.floodHeap.startMb, 5, '<=', 'MB', 1));
    }
  }
  return checks;
}

/** The targets as text: target, measured (median of per-round comparisons), ratio of medians, verdict. */
export function targetsTable(results: readonly PathResult[]): string {
  const checks = targetChecks(results);
  if (checks.length === 0) return '(no target measured: needs kernel-vxlan and vxtun-vxlan, or agent paths)';
  const cell = (v: number | null, c: TargetCheck): string => (v === null ? 'n/a' : `${v.toFixed(c.digits)} ${c.unit}`);
  const rows = checks.map((c) => [c.target, cell(c.value, c), c.ofMedians === null ? '' : cell(c.ofMedians, c), c.verdict]);
  const header = ['target', 'median of rounds', 'of medians', 'verdict'];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]): string => cells.map((c, i) => (i === 0 || i === 3 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ').trimEnd();
  return [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}
