// The arithmetic of interleaved rounds (bench/stats.ts): medians, per-round comparisons against ratio of medians.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { compareRounds, cpuPerUnit, median } from '../../bench/stats';

const Stats = suite('bench/stats: medians and per-round comparisons');

Stats('median of odd and even counts, unsorted input left alone, nothing gives null', () => {
  const values = [3, 1, 2];
  assert.is(median(values), 2);
  assert.equal(values, [3, 1, 2]);
  assert.is(median([4, 1, 3, 2]), 2.5);
  assert.is(median([]), null);
  assert.is(median([NaN, 5]), 5);
});

Stats('ratios are taken round by round and differ from the ratio of medians when the machine drifts', () => {
  // The machine slows down in round 3 for both paths: per round the ratio is always 0.5.
  const kernel = [{ round: 1, value: 10 }, { round: 2, value: 12 }, { round: 3, value: 4 }];
  const vxtun = [{ round: 1, value: 5 }, { round: 2, value: 6 }, { round: 3, value: 2 }];
  const c = compareRounds(vxtun, kernel, 'ratio');
  assert.equal(c.perRound, [0.5, 0.5, 0.5]);
  assert.is(c.medianOfRounds, 0.5);
  assert.is(c.ofMedians, 5 / 10);
  // Drift that hits the paths in different rounds: the per-round median differs from the ratio of medians.
  const drift = compareRounds([{ round: 1, value: 2 }, { round: 2, value: 6 }, { round: 3, value: 6 }],
    [{ round: 1, value: 4 }, { round: 2, value: 12 }, { round: 3, value: 8 }], 'ratio');
  assert.equal(drift.perRound, [0.5, 0.5, 0.75]);
  assert.is(drift.medianOfRounds, 0.5);
  assert.is(drift.ofMedians, 6 / 8);
});

Stats('differences (latency added) per round; a round failed on either side is left out of the per-round list only', () => {
  const kernel = [{ round: 1, value: 80 }, { round: 2, value: null }, { round: 3, value: 90 }];
  const vxtun = [{ round: 1, value: 380 }, { round: 2, value: 400 }, { round: 3, value: 350 }];
  const c = compareRounds(vxtun, kernel, 'difference');
  assert.equal(c.perRound, [300, 260]);
  assert.is(c.medianOfRounds, 280);
  assert.is(c.ofMedians, 380 - 85);
});

Stats('rounds are matched by number, not by position; a zero denominator gives no ratio', () => {
  const c = compareRounds([{ round: 2, value: 3 }, { round: 1, value: 1 }], [{ round: 1, value: 2 }, { round: 2, value: 0 }], 'ratio');
  assert.equal(c.perRound, [0.5]);
  assert.is(compareRounds([], [{ round: 1, value: 1 }], 'ratio').medianOfRounds, null);
  assert.is(compareRounds([], [], 'ratio').ofMedians, null);
});

Stats('CPU per unit carried: seconds / Gbit or / Mpkt, none when nothing was carried', () => {
  assert.is(cpuPerUnit(2, 8), 0.25);
  assert.is(cpuPerUnit(2, 0), null);
  assert.is(cpuPerUnit(NaN, 1), null);
});

Stats.run();
