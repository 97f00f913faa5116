// The arithmetic of interleaved rounds, kept pure so that it is unit-tested (test/bench/stats.test.ts): medians, and
// comparisons of two paths made round by round (each round's vxtun figure against the kernel's of the same round),
// beside the comparison of their medians. FACTS.md: on this shared machine only figures measured together compare.

/** Median of the values (mean of the middle two for an even count); null for none. Non-finite values are skipped. */
export function median(values: readonly number[]): number | null {
  const finite = values.filter((v) => Number.isFinite(v));
  if (finite.length === 0) return null;
  const sorted = [...finite].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/** One round's value of one figure on one path; null when that run failed or did not give the quantity. */
export interface RoundValue {
  round: number;
  value: number | null;
}

/** How two figures compare: a / b (throughput, cost) or a - b (latency added, in the figure's unit). */
export type Comparison = 'ratio' | 'difference';

export interface Compared {
  /** One entry per round both paths measured, in round order. */
  perRound: number[];
  /** Median of `perRound`: the figure the targets use. */
  medianOfRounds: number | null;
  /** The comparison of the two medians, for reference (drift between rounds enters it, not the per-round one). */
  ofMedians: number | null;
}

function combine(a: number, b: number, how: Comparison): number | null {
  if (how === 'difference') return a - b;
  return b === 0 ? null : a / b;
}

/**
 * Compares path A's values with path B's round by round (rounds matched by number; a round missing on either side
 * is left out of `perRound` but its value still counts in that path's median).
 */
export function compareRounds(a: readonly RoundValue[], b: readonly RoundValue[], how: Comparison): Compared {
  const perRound: number[] = [];
  for (const x of a) {
    if (x.value === null) continue;
    const y = b.find((candidate) => candidate.round === x.round);
    if (y === undefined || y.value === null) continue;
    const c = combine(x.value, y.value, how);
    if (c !== null && Number.isFinite(c)) perRound.push(c);
  }
  const ma = median(a.flatMap((x) => (x.value === null ? [] : [x.value])));
  const mb = median(b.flatMap((x) => (x.value === null ? [] : [x.value])));
  return { perRound, medianOfRounds: median(perRound), ofMedians: ma === null || mb === null ? null : combine(ma, mb, how) };
}

/**
 * Machine CPU seconds per unit carried: per Gbit for TCP (bytes received x 8 / 1e9), per million packets for UDP
 * (datagrams received / 1e6). null when nothing was carried (a failed or empty run costs, but has no per-unit cost).
 */
export function cpuPerUnit(cpuSeconds: number, carriedUnits: number): number | null {
  return carriedUnits > 0 && Number.isFinite(cpuSeconds) ? cpuSeconds / carriedUnits : null;
}
