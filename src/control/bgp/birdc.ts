// Talking to our BIRD through `birdc -s <socket>` (BIRD's own client), and reading what it answers: `configure`
// and `show protocols all`, parsed into the fields `vxtun status` shows (BIRD 2.0 user's guide, "Remote control";
// the column layout is BIRD's `proto_cmd_show` output with `timeformat protocol iso long ms`).
import { execFile } from 'node:child_process';

export interface BirdRoutes {
  imported: number;
  exported: number;
  preferred: number;
}

/** One line of `birdc show protocols`, with what `show protocols all` adds for BGP sessions. */
export interface BirdProtocol {
  name: string;
  /** BIRD's protocol type: BGP, Kernel, Static, Pipe, Device, Direct, BFD. */
  proto: string;
  table: string;
  /** up, start, down, flush. */
  state: string;
  /** When the state last changed, as BIRD prints it ("2026-11-29 22:36:29.402" with our timeformat). */
  since: string;
  /** BIRD's info column: for BGP the session state and the last error ("Active  Socket: Connection refused"). */
  info: string;
  /** BGP: Idle, Connect, Active, OpenSent, OpenConfirm, Established, Passive (BIRD's name for waiting passively). */
  bgpState?: string;
  neighbor?: string;
  /** BGP: BIRD's own reason for the last session failure ("Received: Administrative shutdown"). */
  lastError?: string;
  routes?: BirdRoutes;
}

export class BirdcError extends Error {
  constructor(message: string, readonly command: string) {
    super(message);
    this.name = 'BirdcError';
  }
}

const BIRDC_TIMEOUT_MS = 5_000;

/**
 * Runs `birdc -s <socket> <args...>` and returns its output without the greeting line. Throws BirdcError when birdc
 * cannot start, times out, cannot reach the socket (BIRD not running), or BIRD answers with an error.
 */
export function birdc(socket: string, args: readonly string[], options: { birdcPath?: string; timeoutMs?: number } = {}): Promise<string> {
  const command = `birdc -s ${socket} ${args.join(' ')}`;
  return new Promise((resolve, reject) => {
    execFile(options.birdcPath ?? 'birdc', ['-s', socket, ...args], { timeout: options.timeoutMs ?? BIRDC_TIMEOUT_MS, encoding: 'utf8' }, (error, stdout, stderr) => {
      const text = `${stdout}${stderr}`.trim();
      if (error) {
        const why = (error as NodeJS.ErrnoException).code === 'ENOENT' ? 'birdc is not installed (apt-get install bird2)' : text || error.message;
        reject(new BirdcError(`${command} failed: ${why}`, command));
        return;
      }
      // birdc exits 0 even when BIRD refuses a command; BIRD's refusals start with these words.
      const body = text.replace(/^BIRD [^\n]* ready\.\n?/, '');
      if (/^(Unable to connect|Syntax error|Parse error|Unknown command|Access denied)/m.test(body)) {
        reject(new BirdcError(`${command}: ${body}`, command));
        return;
      }
      resolve(body);
    });
  });
}

/**
 * `birdc configure`: BIRD re-reads the file it was started with and restarts only the protocols whose configuration
 * changed. Resolves with BIRD's answer ("Reconfigured", "Reconfiguration in progress"); throws BirdcError with BIRD's
 * message when the file does not parse (BIRD then keeps running on the old configuration).
 */
export async function birdConfigure(socket: string, options: { birdcPath?: string } = {}): Promise<string> {
  const answer = await birdc(socket, ['configure'], options);
  if (/Reconfigur|Reading configuration/.test(answer) && !/error/i.test(answer)) return answer.split('\n').pop()!.trim();
  throw new BirdcError(`birdc configure: BIRD refused the new configuration and keeps the old one: ${answer}`, 'configure');
}

const LINE = /^(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?|\d\d:\d\d:\d\d(?:\.\d+)?|\S+)\s*(.*)$/;

/** Parses `show protocols` or `show protocols all` output (without the greeting line). Unknown lines are skipped. */
export function parseProtocols(text: string): BirdProtocol[] {
  const protocols: BirdProtocol[] = [];
  let current: BirdProtocol | undefined;
  for (const raw of text.split('\n')) {
    const line = raw.replace(/\s+$/, '');
    if (line === '' || line.startsWith('Name ') || line.startsWith('BIRD ')) continue;
    if (!/^\s/.test(line)) {
      const match = LINE.exec(line);
      if (match === null) continue;
      current = { name: match[1]!, proto: match[2]!, table: match[3]!, state: match[4]!, since: match[5]!, info: match[6]!.replace(/\s{2,}/g, '  ').trim() };
      protocols.push(current);
      continue;
    }
    if (current === undefined) continue;
    const field = /^\s+([A-Za-z][A-Za-z0-9 -]*?):\s+(.*)$/.exec(line);
    if (field === null) continue;
    const [, key, value] = field as unknown as [string, string, string];
    if (key === 'BGP state') current.bgpState = value.trim();
    else if (key === 'Neighbor address') current.neighbor = value.trim();
    else if (key === 'Last error') current.lastError = value.trim();
    else if (key === 'Routes') {
      const counts = /(\d+) imported, (?:\d+ filtered, )?(\d+) exported(?:, (\d+) preferred)?/.exec(value);
      if (counts) current.routes = { imported: Number(counts[1]), exported: Number(counts[2]), preferred: Number(counts[3] ?? 0) };
    }
  }
  return protocols;
}

/** `birdc show protocols all`, parsed. */
export async function showProtocols(socket: string, options: { birdcPath?: string } = {}): Promise<BirdProtocol[]> {
  return parseProtocols(await birdc(socket, ['show', 'protocols', 'all'], options));
}
