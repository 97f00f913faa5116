// What a process costs, read from /proc: CPU time (utime + stime) and peak resident memory (VmHWM).
// The benchmarks sample agents before and after each run; nothing here needs the process to cooperate.

import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';

let clockTicks: number | undefined;

/** Kernel clock ticks per second (sysconf _SC_CLK_TCK, `getconf CLK_TCK`); 100 on every Linux we know of. */
export function clockTicksPerSecond(): number {
  if (clockTicks === undefined) {
    try {
      clockTicks = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
    } catch {
      clockTicks = 100;
    }
  }
  return clockTicks;
}

/** User + system CPU seconds used so far by `pid` (its threads included, its children not). */
export function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // comm (field 2) may hold spaces and ')': count from after the last ')'. utime and stime are fields 14 and 15.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / clockTicksPerSecond();
}

/** Peak resident set size of `pid` in bytes (VmHWM), or null when the kernel does not report it. */
export function peakRssBytes(pid: number): number | null {
  const match = /^VmHWM:\s+(\d+)\s+kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return match ? Number(match[1]) * 1024 : null;
}

/** All CPUs' jiffies from the first line of /proc/stat: `busy` is everything but idle and iowait (proc(5)). */
export interface MachineJiffies {
  busy: number;
  total: number;
}

/**
 * Parses the aggregate `cpu` line of /proc/stat text (proc(5): user nice system idle iowait irq softirq steal guest
 * guest_nice, in USER_HZ ticks). guest and guest_nice are already counted in user and nice, so they are left out.
 * Throws on text without a `cpu ` line: the caller has no machine figure rather than a wrong one.
 */
export function parseProcStat(text: string): MachineJiffies {
  const line = text.split('\n').find((l) => l.startsWith('cpu '));
  if (line === undefined) throw new Error('/proc/stat has no aggregate "cpu" line');
  const fields = line.trim().split(/\s+/).slice(1, 9).map(Number);
  if (fields.length < 4 || fields.some((f) => !Number.isFinite(f))) throw new Error(`/proc/stat "cpu" line is malformed: ${line}`);
  const total = fields.reduce((a, b) => a + b, 0);
  const idle = fields[3]! + (fields[4] ?? 0); // idle + iowait
  return { busy: total - idle, total };
}

/** The machine's jiffies now, from /proc/stat. */
export function machineJiffies(): MachineJiffies {
  return parseProcStat(readFileSync('/proc/stat', 'utf8'));
}

/**
 * Machine CPU seconds (all CPUs, non-idle) between two /proc/stat samples: busy jiffies / USER_HZ. Everything the
 * machine ran counts, softirq and kernel threads included (where most forwarding cost lands), and so does any other
 * load on a shared machine: compare figures of one run only.
 */
export function machineCpuSeconds(before: MachineJiffies, after: MachineJiffies, ticksPerSecond = clockTicksPerSecond()): number {
  return (after.busy - before.busy) / ticksPerSecond;
}

/** Share of the machine's CPU time that was busy between two samples, 0-1 (null when no time passed). */
export function machineBusyShare(before: MachineJiffies, after: MachineJiffies): number | null {
  const total = after.total - before.total;
  return total > 0 ? (after.busy - before.busy) / total : null;
}
