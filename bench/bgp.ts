// The bgp backend measured in namespaces with real bird2 processes (FACTS.md "BGP with BIRD" has the figures this
// machine gave a hand-written config; these are vxtun's own):
//   (i)   agent start to a full route table on every node, 3 and 50 nodes in one lab, bgp (encap none, a bird2 per
//         node, full mesh) next to the store-driven vxlan mode;
//   (ii)  route withdrawal at a peer after a node's bird is SIGKILLed, graceful restart off;
//   (iii) route withdrawal at a peer after a node's link is cut, with BFD (100 ms x 5) and graceful restart on.
// Withdrawals are timed from the signal / the link going down to the `Deleted` line of `ip monitor route` in the peer.
//
// `node -r tsx/cjs bench/bgp.ts [--nodes 3,50] [--runs 3]`, or `npm run bench -- --only bgp`.
import { type ChildProcess, spawn } from 'node:child_process';
import { performance } from 'node:perf_hooks';
import { createInterface } from 'node:readline';
import { Overlay, type OverlayOptions } from '../src/lab/overlay';
import { run } from '../src/lab/shell';
import { type Lab, type LabNode, createLab } from '../src/lab/topology';

export interface BgpBenchOptions {
  /** Lab sizes for the convergence figure; default [3, 50]. */
  sizes?: number[];
  /** Repetitions of each withdrawal; default 3; 0 skips them. */
  runs?: number;
  /** Modes of the convergence figure; default both. */
  modes?: ('bgp' | 'vxlan')[];
  log?: (line: string) => void;
}

export interface ConvergenceResult {
  mode: 'bgp' | 'vxlan';
  nodes: number;
  /** First agent spawned -> every agent answering on its status socket (agents start in waves of WAVE). */
  agentsUpMs: number | null;
  /** First agent spawned -> every agent routing to every other node. */
  fullTableMs: number | null;
  /** Last agent answering -> every agent routing to every other node: the routing's own share. */
  afterLastUpMs: number | null;
  /** The last wave: its first agent spawned -> every agent (old and new) routing to every other node. */
  lastWaveMs: number | null;
  error?: string;
}

/**
 * Agents started at once: 50 Node processes booting together on 2 shared cores starve each other and the lab's etcd
 * (measured: agents gave up on etcd after 5 s), so labs start in waves of WAVE, each once the nodes before it route
 * to each other. "last wave" is then WAVE nodes joining a converged (nodes - WAVE)-node network.
 */
const WAVE = 5;

export interface WithdrawalResult {
  what: string;
  samplesMs: number[];
  medianMs: number | null;
  error?: string;
}

export interface BgpBenchResult {
  convergence: ConvergenceResult[];
  withdrawals: WithdrawalResult[];
}

function median(values: number[]): number | null {
  if (values.length === 0) return null;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

async function waitFor(what: string, timeoutMs: number, check: () => Promise<boolean>, stepMs = 250): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, stepMs));
  }
}

async function withLab<T>(tag: string, nodes: number, options: OverlayOptions, body: (lab: Lab, overlay: Overlay) => Promise<T>): Promise<T> {
  const lab = await createLab({ name: `vxt-${tag}${process.pid}`, nodes });
  let overlay: Overlay | undefined;
  try {
    overlay = await Overlay.create(lab, options);
    return await body(lab, overlay);
  } finally {
    await overlay?.close().catch(() => undefined);
    await lab.destroy();
  }
}

async function convergence(mode: 'bgp' | 'vxlan', nodes: number): Promise<ConvergenceResult> {
  // A real etcd on the lab's underlay: 50 agents starting at once wait too long for the embedded file store's lock.
  const common = { store: 'etcd' as const, agentStartTimeoutMs: 180_000 };
  const options: OverlayOptions = mode === 'bgp' ? { backend: 'bgp', ...common } : { backend: 'vxlan', ...common };
  try {
    return await withLab(`bb${mode[0]}${nodes}-`, nodes, options, async (lab, overlay) => {
      const started = performance.now();
      let waveStarted = started;
      let agentsUpMs = 0;
      for (let i = 0; i < lab.nodes.length; i += WAVE) {
        waveStarted = performance.now();
        await Promise.all(lab.nodes.slice(i, i + WAVE).map((node) => overlay.startAgent(node)));
        agentsUpMs = performance.now() - started;
        const up = lab.nodes.slice(0, i + WAVE);
        const done = new Set<string>();
        await waitFor(`${up.length} ${mode} agents to route to each other`, 300_000, async () => {
          for (const node of up) {
            if (done.has(node.name)) continue;
            const status = await overlay.status(node).catch(() => undefined);
            if (status?.routes.length === up.length - 1) done.add(node.name);
          }
          return done.size === up.length;
        });
      }
      const ended = performance.now();
      return { mode, nodes, agentsUpMs, fullTableMs: ended - started, afterLastUpMs: ended - started - agentsUpMs, lastWaveMs: ended - waveStarted };
    });
  } catch (error) {
    return { mode, nodes, agentsUpMs: null, fullTableMs: null, afterLastUpMs: null, lastWaveMs: null, error: (error as Error).message };
  }
}

/** Resolves with performance.now() at the first `Deleted <subnet>` line of `ip monitor route` in `node`. */
function watchDeletion(node: LabNode, subnet: string): { deleted: Promise<number>; monitor: ChildProcess } {
  const monitor = spawn('ip', ['-n', node.netns, 'monitor', 'route'], { stdio: ['ignore', 'pipe', 'ignore'] });
  const deleted = new Promise<number>((resolve) => {
    createInterface({ input: monitor.stdout! }).on('line', (line) => {
      if (line.startsWith('Deleted') && line.includes(subnet)) resolve(performance.now());
    });
  });
  return { deleted, monitor };
}

async function routePresent(lab: Lab, node: LabNode, subnet: string): Promise<boolean> {
  return /proto bird/.test((await lab.exec(node, 'ip', ['route', 'show', subnet])).stdout);
}

async function timeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([promise, new Promise<T>((_, reject) => { timer = setTimeout(() => reject(new Error(`no ${what} within ${ms} ms`)), ms); })]);
  } finally {
    clearTimeout(timer);
  }
}

async function withdrawal(what: 'bird killed, graceful restart off' | 'link cut, BFD 100 ms x 5', runs: number): Promise<WithdrawalResult> {
  const killed = what.startsWith('bird killed');
  const options: OverlayOptions = { backend: 'bgp', bgp: killed ? { gracefulRestart: 0 } : { bfd: true }, agentStartTimeoutMs: 60_000 };
  const samplesMs: number[] = [];
  try {
    await withLab(killed ? 'bbk' : 'bbl', 3, options, async (lab, overlay) => {
      await Promise.all(lab.nodes.map((node) => overlay.startAgent(node)));
      const [n1, n2] = lab.nodes as [LabNode, LabNode];
      const subnet = (await overlay.status(n2)).lease.subnet;
      for (let i = 0; i < runs; i++) {
        await waitFor(`n1 to route ${subnet}`, 60_000, () => routePresent(lab, n1, subnet));
        await waitFor('every session established', 60_000, async () => {
          const peers = (await overlay.status(n2)).bgp?.peers ?? [];
          return peers.length === 2 && peers.every((p) => p.session === 'Established');
        });
        await new Promise((resolve) => setTimeout(resolve, 1_000)); // BFD sessions up too
        const { deleted, monitor } = watchDeletion(n1, subnet);
        await new Promise((resolve) => setTimeout(resolve, 200)); // the monitor listening
        let at: number;
        if (killed) {
          const pid = (await overlay.status(n2)).bgp!.bird.pid!;
          at = performance.now();
          process.kill(pid, 'SIGKILL');
        } else {
          at = performance.now();
          await run('ip', ['-n', lab.hubNetns, 'link', 'set', n2.name, 'down']);
        }
        try {
          samplesMs.push((await timeout(deleted, 30_000, 'withdrawal')) - at);
        } finally {
          monitor.kill();
          if (!killed) await run('ip', ['-n', lab.hubNetns, 'link', 'set', n2.name, 'up']);
        }
      }
    });
    return { what, samplesMs, medianMs: median(samplesMs) };
  } catch (error) {
    return { what, samplesMs, medianMs: median(samplesMs), error: (error as Error).message };
  }
}

export async function runBgpBench(options: BgpBenchOptions = {}): Promise<BgpBenchResult> {
  const log = options.log ?? (() => undefined);
  const convergenceResults: ConvergenceResult[] = [];
  for (const nodes of options.sizes ?? [3, 50]) {
    for (const mode of options.modes ?? (['bgp', 'vxlan'] as const)) {
      log(`bgp bench: ${nodes} nodes, ${mode}: start to a full route table...`);
      convergenceResults.push(await convergence(mode, nodes));
    }
  }
  const withdrawals: WithdrawalResult[] = [];
  for (const what of (options.runs === 0 ? [] : ['bird killed, graceful restart off', 'link cut, BFD 100 ms x 5'] as const)) {
    log(`bgp bench: withdrawal after ${what}...`);
    withdrawals.push(await withdrawal(what, options.runs ?? 3));
  }
  return { convergence: convergenceResults, withdrawals };
}

function ms(value: number | null): string {
  return value === null ? 'FAIL' : value >= 10_000 ? `${(value / 1000).toFixed(1)} s` : `${Math.round(value)} ms`;
}

export function formatBgpBench(result: BgpBenchResult): string {
  const lines = ['bgp (bird2 2.0 per node, namespaces on a bridge): agent start to a full route table on every node'];
  lines.push(`  (agents start in waves of ${WAVE}, each once the earlier ones route to each other; "last wave" = its first agent`);
  lines.push('  started -> every table full; "after last up" = the last agent answering -> every table full)');
  lines.push('  nodes  mode   agents answering  full route table  last wave  after last up');
  for (const c of result.convergence) {
    lines.push(`  ${String(c.nodes).padStart(5)}  ${c.mode.padEnd(5)}  ${ms(c.agentsUpMs).padStart(16)}  ${ms(c.fullTableMs).padStart(16)}  ${ms(c.lastWaveMs).padStart(9)}  ${ms(c.afterLastUpMs).padStart(13)}${c.error ? `\n    ! ${c.error.trim().split('\n').filter((l) => !/level=(info|debug)/.test(l)).slice(0, 6).join('\n    ! ')}` : ''}`);
  }
  lines.push('', 'route withdrawal at a peer (signal or link down -> `Deleted` in its ip monitor)');
  for (const w of result.withdrawals) {
    lines.push(`  ${w.what.padEnd(36)} median ${ms(w.medianMs)}  samples ${w.samplesMs.map((s) => s.toFixed(1)).join(', ')} ms${w.error ? `  ! ${w.error}` : ''}`);
  }
  lines.push('  link cut without BFD: not run (the hold timer, 240 s, decides; FACTS.md measured 192-222 s)');
  return lines.join('\n');
}

if (require.main === module) {
  const args = process.argv.slice(2);
  const sizesAt = args.indexOf('--nodes');
  const runsAt = args.indexOf('--runs');
  // --runs 0 skips the withdrawals.
  const modesAt = args.indexOf('--modes');
  const modes = modesAt >= 0 ? (args[modesAt + 1]!.split(',') as ('bgp' | 'vxlan')[]) : undefined;
  const sizes = sizesAt >= 0 ? args[sizesAt + 1]!.split(',').map(Number) : undefined;
  const runs = runsAt >= 0 ? Number(args[runsAt + 1]) : undefined;
  runBgpBench({ sizes, runs, modes, log: (line) => process.stderr.write(`${line}\n`) }).then(
    (result) => process.stdout.write(`${formatBgpBench(result)}\n`),
    (error: unknown) => {
      process.stderr.write(`bgp bench failed: ${error instanceof Error ? error.stack : String(error)}\n`);
      process.exitCode = 1;
    },
  );
}
