// The performance targets of the project (issue "Speed"), checked against one bench run's figures: each line says
// met or missed, and by how much. Ratios compare paths measured in the same run, as FACTS.md asks.
import type { PathResult } from './e2e';

interface Check {
  target: string;
  actual: string;
  verdict: string;
}

function check(target: string, value: number | null, goal: number, unit: string, higherIsBetter: boolean, digits = 2): Check {
  if (value === null) return { target, actual: 'n/a', verdict: 'not measured' };
  const met = higherIsBetter ? value >= goal : value < goal;
  const gap = higherIsBetter ? goal - value : value - goal;
  return {
    target,
    actual: `${value.toFixed(digits)} ${unit}`,
    verdict: met ? 'met' : `MISSED by ${gap.toFixed(digits)} ${unit} (${((gap / goal) * 100).toFixed(0)}%)`,
  };
}

export function targetChecks(results: PathResult[]): Check[] {
  const path = (name: string): PathResult | undefined => results.find((r) => r.path === name && r.error === null);
  const vxlan = path('vxtun-vxlan');
  const ipip = path('vxtun-ipip');
  const kernel = path('kernel-vxlan');
  const ratio = (a: number | null | undefined, b: number | null | undefined): number | null =>
    a === null || a === undefined || b === null || b === undefined || b === 0 ? null : a / b;
  const checks: Check[] = [
    check('vxtun VXLAN TCP x1 >= 0.5 x kernel VXLAN', ratio(vxlan?.tcp1Gbps.median, kernel?.tcp1Gbps.median), 0.5, 'x kernel', true),
    check('IP-in-IP TCP x1 >= VXLAN TCP x1', ratio(ipip?.tcp1Gbps.median, vxlan?.tcp1Gbps.median), 1, 'x VXLAN', true),
  ];
  for (const r of [vxlan, ipip]) {
    if (r === undefined) continue;
    const kpps = r.udp64Pps.median === null ? null : r.udp64Pps.median / 1000;
    checks.push(check(`${r.path} UDP 64 B >= 300 kpps (client -> server)`, kpps, 300, 'kpps', true, 0));
    const added = r.ping.p50Us === null || kernel?.ping.p50Us == null ? null : r.ping.p50Us - kernel.ping.p50Us;
    checks.push(check(`${r.path} ping p50 added over kernel < 50 us`, added, 50, 'us', false, 0));
    const rssMb = r.agentPeakRssBytes === null ? null : r.agentPeakRssBytes / 2 ** 20;
    checks.push(check(`${r.path} agent peak RSS < 100 MB`, rssMb, 100, 'MB', false, 1));
    // "Flat": the heap may breathe with GC, but does not grow with the packets (under 5 MB above its start).
    const growth = r.floodHeap === null ? null : r.floodHeap.maxMb - r.floodHeap.startMb;
    checks.push(check(`${r.path} heap growth during a ${r.floodHeap?.seconds ?? 30} s flood < 5 MB`, growth, 5, 'MB', false, 1));
  }
  return checks;
}

export function targetsTable(results: PathResult[]): string {
  const checks = targetChecks(results);
  const widths = [Math.max(...checks.map((c) => c.target.length)), Math.max(...checks.map((c) => c.actual.length))];
  return checks.map((c) => `${c.target.padEnd(widths[0])}  ${c.actual.padStart(widths[1])}  ${c.verdict}`).join('\n');
}
