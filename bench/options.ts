// The command line of `npm run bench` (flags documented at the top of bench/run.ts), parsed with commander into
// plain values; pure apart from commander, so unit-tested (test/bench/options.test.ts).
import { Command, CommanderError, InvalidArgumentError } from 'commander';

/**
 * The end-to-end paths, in the fixed order every round runs them.
 *   kernel-vxlan       Linux's VXLAN device at both ends, programmed as flannel does (offloads on, as flannel runs)
 *   vxtun-vxlan        two `vxtun agent` processes, VXLAN
 *   vxtun-ipip         two `vxtun agent` processes, IP-in-IP over raw sockets
 *   mixed              a vxtun agent on the client node, flannel's kernel VXLAN device on the server node (port 8472)
 *   vxtun-vxlan-plain  vxtun-vxlan with --no-offload: one packet per system call
 *   underlay           the lab's veth + bridge, no overlay: the ceiling
 */
export const BASE_PATHS = ['kernel-vxlan', 'vxtun-vxlan', 'vxtun-ipip', 'mixed', 'vxtun-vxlan-plain', 'underlay'] as const;
export type BasePath = (typeof BASE_PATHS)[number];
/** Paths whose ends run vxtun agents, so a variant (extra agent flags) can be made of them. */
export const AGENT_PATHS: readonly BasePath[] = ['vxtun-vxlan', 'vxtun-ipip', 'mixed', 'vxtun-vxlan-plain'];

/**
 * The figures measured on each path every round.
 *   tcp1      iperf3 TCP, 1 stream, client -> server, Gbit/s received
 *   tcp1r     the same with -R (server -> client): run by default only on paths whose two ends differ (mixed)
 *   tcp1v6    iperf3 TCP, 1 stream, over IPv6 end to end: pod (TUN / flannel-v6) addresses over an IPv6 underlay;
 *             on the paths of IPV6_PATHS only, whose labs are then made dual-stack (issue 12)
 *   tcp4      iperf3 TCP, 4 streams
 *   udp64     iperf3 UDP -b 0, 64-byte datagrams, datagrams/s received
 *   udp1400   the same with 1400-byte datagrams
 *   ping      p50 / p99 of N echo requests, us
 *   ping-busy ping p50 with a nice-19 spinner per core (no CPU wake-up latency), us
 */
export const FIGURES = ['tcp1', 'tcp1r', 'tcp1v6', 'tcp4', 'udp64', 'udp1400', 'ping', 'ping-busy'] as const;
export type FigureName = (typeof FIGURES)[number];
export const TCP_FIGURES: readonly FigureName[] = ['tcp1', 'tcp1r', 'tcp1v6', 'tcp4'];
/**
 * Paths that carry tcp1v6: kernel VXLAN programmed as flannel does for IPv6 (flannel-v6.<VNI> with an IPv6 `local`)
 * and vxtun's dual-stack VXLAN agents with --public-ipv6 (and their variants). Both ends alike, so the figure compares
 * the two data planes as tcp1 does; IP-in-IP and mixed have no IPv6 equivalent in the suite.
 */
export const IPV6_PATHS: readonly BasePath[] = ['kernel-vxlan', 'vxtun-vxlan', 'vxtun-vxlan-plain'];
export const UDP_FIGURES: readonly FigureName[] = ['udp64', 'udp1400'];

export type Suite = 'micro' | 'e2e' | 'scale' | 'soak' | 'bgp';
const SUITES: readonly Suite[] = ['micro', 'e2e', 'scale', 'soak', 'bgp'];

/** A path to measure: a base path, or a variant of one whose agents get extra flags. */
export interface PathSpec {
  /** 'vxtun-vxlan', or for a variant '<base>+<variant>', e.g. 'vxtun-vxlan+uring'. */
  name: string;
  base: BasePath;
  /** Extra `vxtun agent` flags (empty for a base path). */
  agentArgs: string[];
}

export interface BenchArgs {
  /** Only this suite; undefined runs micro, e2e and scale (soak and bgp run only when asked for). */
  only: Suite | undefined;
  rounds: number;
  seconds: number;
  /** Paths in round order, variants placed right after their base. */
  paths: PathSpec[];
  figures: FigureName[];
  /** --figures was given: tcp1r then runs on every path, not only the asymmetric ones. */
  figuresGiven: boolean;
  /** Seconds of the heap-sampling UDP flood after the rounds, per agent path; 0 skips it. */
  flood: number;
  pingCount: number;
  soakMinutes: number;
}

/**
 * Splits agent flags as a shell would split a simple command line: whitespace separates words, '...' and "..." quote
 * (no escapes, no expansions). Throws on an unterminated quote.
 */
export function splitFlags(text: string): string[] {
  const words: string[] = [];
  let word = '';
  let inWord = false;
  let quote: '"' | "'" | null = null;
  for (const ch of text) {
    if (quote !== null) {
      if (ch === quote) quote = null;
      else word += ch;
    } else if (ch === '"' || ch === "'") {
      quote = ch;
      inWord = true;
    } else if (/\s/.test(ch)) {
      if (inWord) words.push(word);
      word = '';
      inWord = false;
    } else {
      word += ch;
      inWord = true;
    }
  }
  if (quote !== null) throw new Error(`unterminated ${quote} in "${text}"`);
  if (inWord) words.push(word);
  return words;
}

/**
 * Parses one --variant: `NAME=FLAGS` makes path `vxtun-vxlan+NAME`; `BASE+NAME=FLAGS` a variant of another agent path
 * (vxtun-ipip, mixed, vxtun-vxlan-plain). NAME: lower-case letters, digits and '-'.
 */
export function parseVariant(spec: string): PathSpec {
  const eq = spec.indexOf('=');
  if (eq < 0) throw new Error(`--variant "${spec}": expected NAME=FLAGS, e.g. uring="--tun-io uring"`);
  const label = spec.slice(0, eq);
  const plus = label.lastIndexOf('+');
  const base = plus < 0 ? 'vxtun-vxlan' : label.slice(0, plus);
  const name = plus < 0 ? label : label.slice(plus + 1);
  if (!(AGENT_PATHS as readonly string[]).includes(base)) {
    throw new Error(`--variant "${spec}": ${base} runs no vxtun agent; a variant extends one of ${AGENT_PATHS.join(', ')}`);
  }
  if (!/^[a-z0-9][a-z0-9-]{0,23}$/.test(name)) throw new Error(`--variant "${spec}": name "${name}" must be 1-24 of a-z, 0-9, '-'`);
  const agentArgs = splitFlags(spec.slice(eq + 1));
  if (agentArgs.length === 0) throw new Error(`--variant "${spec}": no agent flags`);
  return { name: `${base}+${name}`, base: base as BasePath, agentArgs };
}

function list<T extends string>(what: string, allowed: readonly T[]) {
  return (value: string): T[] => {
    const items = value.split(',').map((s) => s.trim()).filter((s) => s.length > 0);
    if (items.length === 0) throw new InvalidArgumentError(`empty ${what} list`);
    for (const item of items) {
      if (!(allowed as readonly string[]).includes(item)) throw new InvalidArgumentError(`unknown ${what} "${item}" (known: ${allowed.join(', ')})`);
    }
    return [...new Set(items)] as T[];
  };
}

function number(what: string, min: number, max: number, integer: boolean) {
  return (value: string): number => {
    const n = Number(value);
    if (!Number.isFinite(n) || n < min || n > max || (integer && !Number.isInteger(n))) {
      throw new InvalidArgumentError(`${what} must be ${integer ? 'an integer ' : ''}${min}-${max}`);
    }
    return n;
  };
}

/** The commander program; `output` receives help and error text (stderr in the bench, a buffer in tests). */
function program(output: (text: string) => void): Command {
  return new Command('npm run bench --')
    .exitOverride()
    .configureOutput({ writeOut: output, writeErr: output })
    .allowExcessArguments(false)
    .option('--only <suite>', `one suite: ${SUITES.join(', ')} (default micro, e2e and scale)`, (v: string) => {
      if (!(SUITES as readonly string[]).includes(v)) throw new InvalidArgumentError(`must be one of ${SUITES.join(', ')}`);
      return v as Suite;
    })
    .option('--rounds <n>', 'e2e interleaved rounds (and bgp runs)', number('--rounds', 1, 50, true), 3)
    .option('--runs <n>', 'old name of --rounds', number('--runs', 1, 50, true))
    .option('--seconds <s>', 'seconds per iperf3 run', number('--seconds', 1, 120, false), 5)
    .option('--paths <list>', `e2e paths, comma-separated (default all: ${BASE_PATHS.join(',')})`, list('path', BASE_PATHS))
    .option('--figures <list>', `e2e figures, comma-separated (default all: ${FIGURES.join(',')}; tcp1r only on mixed unless named; tcp1v6 only on ${IPV6_PATHS.join(', ')})`, list('figure', FIGURES))
    .option('--variant <name=flags>', 'extra path vxtun-vxlan+NAME whose agents get FLAGS; BASE+NAME=FLAGS for another agent path; repeatable',
      (v: string, previous: string[]) => [...previous, v], [] as string[])
    .option('--flood <s>', 'seconds of the heap-sampling 64 B flood per agent path after the rounds, 0 = none', number('--flood', 0, 300, false), 30)
    .option('--ping-count <n>', 'echo requests per ping figure and round (every 50 ms)', number('--ping-count', 5, 1000, true), 50)
    .option('--soak-minutes <n>', 'length of --only soak', number('--soak-minutes', 0.5, 24 * 60, false), 10);
}

/** Help text of the bench's flags. */
export function benchUsage(): string {
  return program(() => undefined).helpInformation();
}

/** Thrown for --help: the caller prints `text` and exits 0. */
export class HelpRequested extends Error {
  constructor(readonly text: string) {
    super('help requested');
  }
}

/**
 * Parses the flags after `npm run bench --`. Throws Error with commander's message (and the usage) on bad input,
 * HelpRequested for --help.
 */
export function parseBenchArgs(argv: readonly string[]): BenchArgs {
  let text = '';
  const cmd = program((t) => { text += t; });
  try {
    cmd.parse([...argv], { from: 'user' });
  } catch (error) {
    if (error instanceof CommanderError && (error.code === 'commander.helpDisplayed' || error.code === 'commander.help')) throw new HelpRequested(text);
    if (error instanceof CommanderError) throw new Error(`${text.trim() || error.message}\n${benchUsage()}`);
    throw error;
  }
  const o = cmd.opts<{
    only?: Suite; rounds: number; runs?: number; seconds: number; paths?: BasePath[]; figures?: FigureName[];
    variant: string[]; flood: number; pingCount: number; soakMinutes: number;
  }>();
  const variants = o.variant.map(parseVariant);
  const names = new Set<string>();
  for (const v of variants) {
    if (names.has(v.name)) throw new Error(`--variant ${v.name} given twice`);
    names.add(v.name);
  }
  const bases = o.paths ?? [...BASE_PATHS];
  const paths: PathSpec[] = [];
  for (const base of BASE_PATHS) {
    if (bases.includes(base)) paths.push({ name: base, base, agentArgs: [] });
    for (const v of variants) if (v.base === base) paths.push(v);
  }
  return {
    only: o.only,
    rounds: o.runs ?? o.rounds,
    seconds: o.seconds,
    paths,
    figures: o.figures ?? [...FIGURES],
    figuresGiven: o.figures !== undefined,
    flood: o.flood,
    pingCount: o.pingCount,
    soakMinutes: o.soakMinutes,
  };
}

/**
 * Whether `figure` is measured on `path`: tcp1r by default only where the two ends differ (mixed and its variants);
 * tcp1v6 only on IPV6_PATHS.
 */
export function measures(args: Pick<BenchArgs, 'figures' | 'figuresGiven'>, path: PathSpec, figure: FigureName): boolean {
  if (!args.figures.includes(figure)) return false;
  if (figure === 'tcp1v6') return IPV6_PATHS.includes(path.base);
  if (figure === 'tcp1r' && !args.figuresGiven) return path.base === 'mixed';
  return true;
}
