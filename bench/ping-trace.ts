// Where a ping's time goes inside one vxtun agent: a lab with two agents (flags from --agent-flags), the server
// agent's system calls traced with `perf trace` (or strace -f -ttt -T: --tracer strace; ptrace stops every system
// call, traced or not, so its gaps are inflated) while the client pings it slowly, then each echo's two
// traversals of that agent are cut into: event-loop wake-up (epoll_wait return) -> first data call, the calls
// themselves, and the JavaScript between them, and the kernel's turn-around between our TUN write and the reply's
// readiness. Tracing slows every system call, so the absolute figures are upper bounds; the split is what it shows.
//
//   node -r tsx/cjs bench/ping-trace.ts [--count 30] [--tracer perf|strace] [--agent-flags "--tun-io uring"]   (root; npm run build first)
import { readFileSync, rmSync } from 'node:fs';
import { spawn } from 'node:child_process';
import { Overlay } from '../src/lab/overlay';
import { ping } from '../src/lab/ping';
import { createLab } from '../src/lab/topology';
import { formatIPv4 } from '../src/wire/address';

interface Call {
  tid: number;
  start: number;
  end: number;
  name: string;
  result: string;
}

/** perf trace lines: "  12.345 ( 0.012 ms): node/1234 recvmmsg(fd: 20, ...) = 1" (times in ms). */
function parsePerf(text: string): Call[] {
  const calls: Call[] = [];
  const line = /^\s*(\d+\.\d+) \(\s*(\d+\.\d+) ms\): .*?\/(\d+) (\w+)\(.*\)\s+=\s+(-?\d+|\?)/;
  for (const text_ of text.split('\n')) {
    const m = line.exec(text_);
    if (m === null) continue;
    const start = Number(m[1]) / 1000;
    calls.push({ tid: Number(m[3]), start, end: start + Number(m[2]) / 1000, name: m[4], result: m[5] });
  }
  return calls;
}

function parse(text: string): Call[] {
  const calls: Call[] = [];
  const line = /^(?:\[pid\s+(\d+)\]\s+|(\d+)\s+)?(\d+\.\d+)\s+(\w+)\((.*)\)\s+=\s+(-?\d+|\?)[^<]*<(\d+\.\d+)>/;
  for (const text_ of text.split('\n')) {
    const m = line.exec(text_);
    if (m === null) continue;
    const start = Number(m[3]);
    calls.push({ tid: Number(m[1] ?? m[2] ?? 0), start, end: start + Number(m[7]), name: m[4], result: m[6] });
  }
  return calls;
}

function median(v: number[]): number {
  const s = [...v].sort((a, b) => a - b);
  return s.length === 0 ? NaN : s[s.length >> 1];
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const get = (flag: string, fallback: string): string => {
    const i = argv.indexOf(flag);
    return i >= 0 ? argv[i + 1] : fallback;
  };
  const count = Number(get('--count', '30'));
  const tracer = get('--tracer', 'perf');
  const agentFlags = get('--agent-flags', '').split(/\s+/).filter((s) => s !== '');
  const lab = await createLab({ name: `vxt-pt${process.pid % 100000}`, nodes: 2 });
  let overlay: Overlay | undefined;
  const out = `/tmp/vxtun-ping-trace-${process.pid}.txt`;
  try {
    overlay = await Overlay.create(lab, { backend: 'vxlan' });
    const [client, server] = [lab.node(1), lab.node(2)];
    const args = ['--no-ip-masq', ...agentFlags];
    await overlay.startAgent(client, args);
    const handle = await overlay.startAgent(server, args);
    await overlay.waitForRoutes(client, 1);
    await overlay.waitForRoutes(server, 1);
    const target = formatIPv4((await overlay.subnetOf(server)).address);
    await ping(lab, client, target, { count: 3, intervalSeconds: 0.1 });
    const plain = await ping(lab, client, target, { count, intervalSeconds: 0.2 });
    const syscalls = 'epoll_wait,epoll_pwait,readv,writev,write,read,sendmmsg,recvmmsg,io_uring_enter';
    const strace = tracer === 'strace'
      ? spawn('strace', ['-f', '-ttt', '-T', '-o', out, '-e', `trace=${syscalls}`, '-p', String(handle.process.pid)], { stdio: 'ignore' })
      : spawn('perf', ['trace', '-o', out, '-e', syscalls, '-p', String(handle.process.pid)], { stdio: 'ignore' });
    await new Promise((r) => setTimeout(r, 1500));
    const traced = await ping(lab, client, target, { count, intervalSeconds: 0.2 });
    strace.kill('SIGINT');
    await new Promise((r) => strace.once('exit', r));
    const calls = (tracer === 'strace' ? parse : parsePerf)(readFileSync(out, 'utf8'));
    // Per echo: recvmmsg that returned >= 1 (the request), the TUN write after it, the next wake-up, the TUN read
    // that returned data, and the sendmmsg after it (the reply).
    const wakeToRecv: number[] = [];
    const recvToTunWrite: number[] = [];
    const tunWriteToWake: number[] = [];
    const wakeToTunRead: number[] = [];
    const tunReadToSend: number[] = [];
    const inAgent: number[] = [];
    /** Time inside the data calls themselves (strace -T) per echo: recvmmsg + TUN write, TUN reads + sendmmsg. */
    const inCalls: number[] = [];
    for (let i = 0; i < calls.length; i++) {
      const c = calls[i];
      if (c.name !== 'recvmmsg' || c.result === '-1' || Number(c.result) < 1) continue;
      const wake = [...calls.slice(0, i)].reverse().find((x) => x.tid === c.tid && x.name.startsWith('epoll'));
      const tunWrite = calls.slice(i + 1).find((x) => x.tid === c.tid && (x.name === 'writev' || x.name === 'write' || x.name === 'io_uring_enter'));
      if (wake === undefined || tunWrite === undefined) continue;
      const j = calls.indexOf(tunWrite);
      const nextWake = calls.slice(j + 1).find((x) => x.tid === c.tid && x.name.startsWith('epoll') && Number(x.result) > 0);
      if (nextWake === undefined) continue;
      const k = calls.indexOf(nextWake);
      const tunRead = calls.slice(k + 1).find((x) => x.tid === c.tid && (x.name === 'readv' || x.name === 'io_uring_enter') && x.result !== '-1');
      const send = calls.slice(k + 1).find((x) => x.tid === c.tid && x.name === 'sendmmsg');
      if (tunRead === undefined || send === undefined) continue;
      wakeToRecv.push((c.start - wake.end) * 1e6);
      recvToTunWrite.push((tunWrite.end - c.end) * 1e6);
      tunWriteToWake.push((nextWake.end - tunWrite.end) * 1e6);
      wakeToTunRead.push((tunRead.start - nextWake.end) * 1e6);
      tunReadToSend.push((send.end - tunRead.start) * 1e6);
      inAgent.push((tunWrite.end - wake.end + send.end - nextWake.end) * 1e6);
      const dataCalls = (from: number, to: number): number =>
        calls.slice(from, to + 1).filter((x) => x.tid === c.tid && !x.name.startsWith('epoll')).reduce((sum, x) => sum + (x.end - x.start), 0);
      inCalls.push((dataCalls(i, j) + dataCalls(k + 1, calls.indexOf(send))) * 1e6);
    }
    const sorted = (r: { rttsMs: number[] }): number => median(r.rttsMs) * 1000;
    process.stdout.write(`server agent, ${wakeToRecv.length} echoes traced with ${tracer}; flags: ${agentFlags.join(' ') || '(defaults)'}\n`);
    process.stdout.write(`ping p50 untraced ${sorted(plain).toFixed(0)} us, traced ${sorted(traced).toFixed(0)} us\n`);
    process.stdout.write('| step (server agent) | median us |\n|---|---|\n');
    process.stdout.write(`| wake-up (epoll_wait returns) -> recvmmsg starts: callback entry | ${median(wakeToRecv).toFixed(0)} |\n`);
    process.stdout.write(`| recvmmsg ends -> TUN write ends: decapsulate + write | ${median(recvToTunWrite).toFixed(0)} |\n`);
    process.stdout.write(`| TUN write ends -> next epoll_wait returns: kernel answers + wake-up | ${median(tunWriteToWake).toFixed(0)} |\n`);
    process.stdout.write(`| wake-up -> TUN read starts: callback entry | ${median(wakeToTunRead).toFixed(0)} |\n`);
    process.stdout.write(`| TUN read starts -> sendmmsg ends: read + encapsulate + send | ${median(tunReadToSend).toFixed(0)} |\n`);
    process.stdout.write(`| both traversals inside the agent (wake-ups to the last call) | ${median(inAgent).toFixed(0)} |\n`);
    process.stdout.write(`| of which inside the data system calls (recvmmsg, TUN write, TUN reads, sendmmsg) | ${median(inCalls).toFixed(0)} |\n`);
  } finally {
    rmSync(out, { force: true });
    await overlay?.close();
    await lab.destroy();
  }
}

main().catch((error) => {
  process.stderr.write(`${error instanceof Error ? error.stack : String(error)}\n`);
  process.exit(1);
});
