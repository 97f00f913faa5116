// Machine CPU accounting from /proc/stat samples (src/lab/proc.ts), without root: parsed text, not the live file,
// except one check that the live file parses and moves forward.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { machineBusyShare, machineCpuSeconds, machineJiffies, parseProcStat } from '../../src/lab/proc';

const Proc = suite('lab/proc: machine CPU seconds from two /proc/stat samples');

// proc(5): cpu user nice system idle iowait irq softirq steal guest guest_nice
const BEFORE = 'cpu  1000 50 400 9000 100 20 30 0 200 10\ncpu0 500 25 200 4500 50 10 15 0 100 5\nintr 12345\n';
const AFTER = 'cpu  1300 50 500 9100 150 20 130 0 260 10\ncpu0 650 25 250 4550 75 10 65 0 130 5\nintr 22345\n';

Proc('busy is every field but idle and iowait; guest is already inside user and not counted twice', () => {
  assert.equal(parseProcStat(BEFORE), { busy: 1000 + 50 + 400 + 20 + 30 + 0, total: 1000 + 50 + 400 + 9000 + 100 + 20 + 30 + 0 });
});

Proc('CPU seconds between two samples: busy jiffies / USER_HZ, summed over all CPUs', () => {
  const before = parseProcStat(BEFORE);
  const after = parseProcStat(AFTER);
  // busy grew by 300 user + 100 system + 100 softirq = 500 jiffies; at 100 Hz that is 5 s, at 250 Hz 2 s.
  assert.is(machineCpuSeconds(before, after, 100), 5);
  assert.is(machineCpuSeconds(before, after, 250), 2);
  // idle grew by 100 + iowait by 50: 500 busy of 650 elapsed.
  assert.ok(Math.abs(machineBusyShare(before, after)! - 500 / 650) < 1e-12);
  assert.is(machineBusyShare(before, before), null);
});

Proc('the aggregate line is found even when it is not first, and per-CPU lines are not taken for it', () => {
  assert.equal(parseProcStat(`cpu0 1 2 3 4 5 6 7 8 9 10\n${BEFORE}`), parseProcStat(BEFORE));
});

Proc('text without a cpu line, or with a malformed one, throws instead of giving a wrong figure', () => {
  assert.throws(() => parseProcStat('intr 1 2 3\n'), /no aggregate "cpu" line/);
  assert.throws(() => parseProcStat('cpu  1 2 x 4\n'), /malformed/);
  assert.throws(() => parseProcStat('cpu  1 2\n'), /malformed/);
});

Proc('older kernels with only four fields (no iowait) still parse', () => {
  assert.equal(parseProcStat('cpu  10 20 30 40\n'), { busy: 60, total: 100 });
});

Proc('the live /proc/stat parses and its counters do not go backwards', () => {
  const a = machineJiffies();
  const b = machineJiffies();
  assert.ok(a.total > 0 && a.busy > 0 && a.busy <= a.total);
  assert.ok(b.total >= a.total && b.busy >= a.busy);
});

Proc.run();
