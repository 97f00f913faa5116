// The tcp1v6 figure (issue 12, item 6): which paths measure it, that asking for it is parsed, and that the report
// gives it its own column and comparison (vxtun-vxlan / kernel-vxlan over IPv6, per round).
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import type { FigureResult, PathResult, Sample } from '../../bench/e2e';
import { comparisonTable, cpuTable, figuresTable } from '../../bench/e2e-report';
import { type BasePath, type FigureName, FIGURES, IPV6_PATHS, TCP_FIGURES, measures, parseBenchArgs } from '../../bench/options';

const V6 = suite('bench: tcp1v6, IPv6 TCP single stream');

function sample(round: number, value: number | null): Sample {
  return { round, value, error: value === null ? 'failed' : null, load1: 0, backgroundBusy: null, machineCpuSeconds: 1, carried: value, cpuPerUnit: value === null ? null : 1 / value, agentCpuSeconds: null };
}

function path(name: string, base: BasePath, figures: Partial<Record<FigureName, Array<number | null>>>): PathResult {
  const out: PathResult = { path: name, base, agentArgs: [], error: null, figures: {}, agentPeakRssBytes: null, floodHeap: null };
  for (const [figure, values] of Object.entries(figures) as Array<[FigureName, Array<number | null>]>) {
    const samples = values.map((v, i) => sample(i + 1, v));
    const sorted = values.filter((v): v is number => v !== null).sort((a, b) => a - b);
    const f: FigureResult = { figure, samples, median: sorted.length ? sorted[Math.floor(sorted.length / 2)]! : null, cpuPerUnitMedian: null, agentCpuMedian: null };
    out.figures[figure] = f;
  }
  return out;
}

V6('tcp1v6 is a TCP figure measured only on the vxlan paths whose two ends are alike', () => {
  assert.ok(FIGURES.includes('tcp1v6'));
  assert.ok(TCP_FIGURES.includes('tcp1v6'));
  assert.equal([...IPV6_PATHS], ['kernel-vxlan', 'vxtun-vxlan', 'vxtun-vxlan-plain']);
  const args = parseBenchArgs(['--only', 'e2e', '--paths', 'kernel-vxlan,vxtun-vxlan,vxtun-ipip,mixed,underlay', '--figures', 'tcp1,tcp1v6', '--variant', 'uring=--tun-io uring']);
  assert.equal(args.figures, ['tcp1', 'tcp1v6']);
  const v6 = args.paths.filter((p) => measures(args, p, 'tcp1v6')).map((p) => p.name);
  assert.equal(v6, ['kernel-vxlan', 'vxtun-vxlan', 'vxtun-vxlan+uring'], 'a variant of vxtun-vxlan measures it too');
  assert.is(args.paths.filter((p) => measures(args, p, 'tcp1')).length, 6, 'tcp1 everywhere');
  const without = parseBenchArgs(['--only', 'e2e', '--figures', 'tcp1']);
  assert.not.ok(without.paths.some((p) => measures(without, p, 'tcp1v6')), 'not asked for: no lab is made dual-stack');
});

V6('the report: a TCP6 column beside TCP x1, its CPU cost, and the per-round ratio against kernel-vxlan', () => {
  // Round 2 is slow for both paths (the machine drifted): the per-round ratio stays 0.5.
  const kernel = path('kernel-vxlan', 'kernel-vxlan', { tcp1: [10, 5], tcp1v6: [8, 4] });
  const vxtun = path('vxtun-vxlan', 'vxtun-vxlan', { tcp1: [6, 3], tcp1v6: [4, 2] });
  const figures = figuresTable([kernel, vxtun]).split('\n');
  assert.match(figures[0]!, /^path\s+TCP x1 Gbit\/s\s+TCP6 x1 Gbit\/s$/);
  assert.match(figures[2]!, /^kernel-vxlan\s+10\.00\s+8\.00$/);
  assert.match(figures[3]!, /^vxtun-vxlan\s+6\.00\s+4\.00$/);
  assert.match(cpuTable([kernel, vxtun]).split('\n')[0]!, /tcp1v6 s\/Gbit/);
  const comparison = comparisonTable([kernel, vxtun]).split('\n');
  assert.match(comparison[0]!, /^paths\s+tcp1\s+tcp1v6/);
  assert.match(comparison[2]!, /^vxtun-vxlan \/ kernel-vxlan\s+0\.60 \(0\.60\)\s+0\.50 \(0\.50\)/);
  const failed = path('vxtun-vxlan', 'vxtun-vxlan', { tcp1: [6, 3], tcp1v6: [4, null] });
  assert.match(figuresTable([kernel, failed]).split('\n')[3]!, /4\.00\*$/, 'a failed IPv6 round is marked');
});

V6.run();
