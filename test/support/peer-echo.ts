// "Who do you see?": a small UDP + TCP server that answers every datagram or connection with the source address it
// saw, so a test learns, from the client side, whether a packet arrived with the sender's own address (no NAT) or a
// rewritten one, and that the reply found its way back. Runs in any lab namespace (a pod, a node, the outside host).
import { once } from 'node:events';
import type { ChildProcess } from 'node:child_process';
import { CommandError } from '../../src/lab/shell';
import type { InNamespace, Lab } from '../../src/lab/topology';

export const PEER_ECHO_PORT = 7007;

const SERVER = `
const dgram = require('node:dgram'), net = require('node:net');
const port = Number(process.argv[1]);
const udp = dgram.createSocket('udp4');
udp.on('message', (m, r) => udp.send(r.address, r.port, r.address));
const tcp = net.createServer((s) => { s.on('error', () => {}); s.end(s.remoteAddress); });
udp.bind(port, '0.0.0.0', () => tcp.listen(port, '0.0.0.0', () => console.log('ready')));`;

const CLIENT = `
const [proto, address, port] = [process.argv[1], process.argv[2], Number(process.argv[3])];
let sent = 0;
setTimeout(() => { console.error('no answer from ' + address + ':' + port + ' (' + proto + (sent ? ', ' + sent + ' datagrams sent' : '') + ')'); process.exit(2); }, 5000);
if (proto === 'udp') {
  // UDP may lose a datagram (a neighbour still resolving on a busy machine): ask again every 300 ms, as a client would.
  const s = require('node:dgram').createSocket('udp4');
  s.on('message', (m) => { console.log(m.toString()); process.exit(0); });
  const ask = () => { sent++; s.send('who', port, address); };
  ask();
  setInterval(ask, 300);
} else {
  let text = '';
  const c = require('node:net').connect(port, address);
  c.on('data', (d) => { text += d; });
  c.on('end', () => { console.log(text); process.exit(0); });
  c.on('error', (e) => { console.error(e.message); process.exit(3); });
}`;

export interface PeerEcho {
  process: ChildProcess;
  stop(): Promise<void>;
}

/** Starts the server in `place` on `port` (UDP and TCP) and waits until it listens. */
export async function startPeerEcho(lab: Lab, place: InNamespace, port = PEER_ECHO_PORT): Promise<PeerEcho> {
  const child = lab.spawn(place, process.execPath, ['-e', SERVER, String(port)], { stdio: 'pipe' });
  let output = '';
  const ready = new Promise<void>((resolve, reject) => {
    child.stdout!.on('data', (chunk: Buffer) => {
      output += chunk.toString();
      if (output.includes('ready')) resolve();
    });
    child.stderr!.on('data', (chunk: Buffer) => { output += chunk.toString(); });
    child.once('exit', (code) => reject(new Error(`peer echo in ${place.netns} exited (${code}): ${output}`)));
    setTimeout(() => reject(new Error(`peer echo in ${place.netns} not ready: ${output}`)), 5000);
  });
  await ready;
  return {
    process: child,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGKILL');
        await once(child, 'close');
      }
    },
  };
}

/** Asks the server at `address` from `from`; returns the source address the server saw (throws when no answer). */
export async function seenSource(lab: Lab, from: InNamespace, address: string, proto: 'udp' | 'tcp' = 'udp', port = PEER_ECHO_PORT): Promise<string> {
  try {
    const { stdout } = await lab.exec(from, process.execPath, ['-e', CLIENT, proto, address, String(port)], { timeoutMs: 10_000 });
    return stdout.trim();
  } catch (error) {
    if (error instanceof CommandError) throw new Error(`${proto} from ${from.netns} to ${address}:${port}: ${error.stderr.trim() || error.message}`);
    throw error;
  }
}
