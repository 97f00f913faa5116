// `node -r tsx/cjs bench/tso6.ts [--rounds N] [--seconds S]` (root): IPv6 TCP single stream from a vxtun TUN to a
// kernel VXLAN peer programmed as flannel-v6 (over an IPv4 underlay, two namespaces on a veth), with the TUN opened
// plain and with offloads (IFF_VNET_HDR: TSO6 super-packets when native/tun.cc asks for TUN_F_TSO6), interleaved
// rounds in one run. Prints Gbit/s per round and, from the engine's counters, how many TUN reads became how many
// datagrams (a ratio above 1 means super-packets were segmented). Uses test/net/v6-core.child.ts for the engine.
import { type ChildProcess, execFileSync, spawn } from 'child_process';
import * as path from 'path';
import type { V6ChildConfig } from '../test/net/v6-core.child';

const ROOT = path.join(__dirname, '..');
const CHILD = path.join(ROOT, 'test', 'net', 'v6-core.child.ts');
const K = `vxt-tso6-${process.pid}-k`;
const V = `vxt-tso6-${process.pid}-v`;
const KERNEL_MAC = '0e:00:00:00:01:06';
const OUR_MAC6 = '0e:00:00:00:02:06';

function sh(netns: string | undefined, ...argv: string[]): string {
  const full = netns === undefined ? argv : ['ip', 'netns', 'exec', netns, ...argv];
  return execFileSync(full[0], full.slice(1), { encoding: 'utf8', timeout: 60_000, stdio: ['ignore', 'pipe', 'pipe'] });
}

function cleanup(): void {
  for (const ns of [K, V]) {
    try {
      execFileSync('ip', ['netns', 'delete', ns], { stdio: 'ignore' });
    } catch {
      // not made
    }
  }
}

function setup(): void {
  execFileSync('ip', ['netns', 'add', K]);
  execFileSync('ip', ['netns', 'add', V]);
  sh(undefined, 'ip', 'link', 'add', 'vxt6bk', 'netns', K, 'type', 'veth', 'peer', 'name', 'vxt6bv', 'netns', V);
  sh(K, 'ip', 'addr', 'add', '192.0.2.1/24', 'dev', 'vxt6bk');
  sh(V, 'ip', 'addr', 'add', '192.0.2.2/24', 'dev', 'vxt6bv');
  for (const [ns, dev] of [[K, 'vxt6bk'], [V, 'vxt6bv']]) {
    sh(ns, 'ip', 'link', 'set', 'lo', 'up');
    sh(ns, 'ip', 'link', 'set', dev, 'up');
  }
  // FACTS.md "checksum offload": the kernel VTEP over a veth leaves inner checksums partial; a TUN reader sees them bad.
  sh(K, 'ethtool', '-K', 'vxt6bk', 'tx', 'off');
  sh(K, 'ip', 'link', 'add', 'vxt6kv', 'address', KERNEL_MAC, 'type', 'vxlan', 'id', '1', 'local', '192.0.2.1', 'dstport', '8472', 'nolearning');
  sh(K, 'ip', 'link', 'set', 'vxt6kv', 'mtu', '1450', 'up');
  sh(K, 'ip', '-6', 'addr', 'add', 'fd00:10:244:1::/128', 'dev', 'vxt6kv', 'nodad');
  sh(K, 'ip', '-6', 'neigh', 'replace', 'fd00:10:244:2::', 'lladdr', OUR_MAC6, 'dev', 'vxt6kv', 'nud', 'permanent');
  sh(K, 'bridge', 'fdb', 'append', OUR_MAC6, 'dst', '192.0.2.2', 'dev', 'vxt6kv', 'self', 'permanent');
  sh(K, 'ip', '-6', 'route', 'add', 'fd00:10:244:2::/64', 'via', 'fd00:10:244:2::', 'dev', 'vxt6kv', 'onlink');
}

async function withEngine<T>(offload: boolean, body: () => T): Promise<{ result: T; counters: Record<string, { packets: number }> }> {
  const config: V6ChildConfig = {
    tun: 'vxt6b0', tunMtu: 1450, overlayMtu: 1450, underlay: '192.0.2.2', port: 8472, subnet: '10.17.2.0/24',
    subnet6: 'fd00:10:244:2::/64', vtepMac: '0e:00:00:00:02:00', vtepMac6: OUR_MAC6, network6: 'fd00:10:244::/56',
    peer: { underlay: '192.0.2.1', subnet6: 'fd00:10:244:1::/64', vtepMac6: KERNEL_MAC }, offload,
  };
  const child: ChildProcess = spawn('ip', ['netns', 'exec', V, process.execPath, '-r', 'tsx/cjs', CHILD, JSON.stringify(config)], { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  await new Promise<void>((resolve, reject) => {
    child.stdout!.on('data', (d) => {
      out += d;
      if (out.includes('ready\n')) resolve();
    });
    child.on('exit', (code) => reject(new Error(`engine exited ${code}`)));
  });
  try {
    const result = body();
    const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
    child.kill('SIGTERM');
    await exited;
    return { result, counters: JSON.parse(out.trim().split('\n').pop()!) };
  } finally {
    if (child.exitCode === null) child.kill('SIGKILL');
  }
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const rounds = Number(args[args.indexOf('--rounds') + 1] ?? 2) || 2;
  const seconds = Number(args[args.indexOf('--seconds') + 1] ?? 5) || 5;
  cleanup();
  setup();
  const server = spawn('ip', ['netns', 'exec', K, 'iperf3', '-s', '-B', 'fd00:10:244:1::'], { stdio: 'ignore' });
  try {
    await new Promise((r) => setTimeout(r, 500));
    for (let round = 1; round <= rounds; round++) {
      for (const offload of [false, true]) {
        const { result, counters } = await withEngine(offload, () =>
          JSON.parse(sh(V, 'iperf3', '-6', '-J', '-c', 'fd00:10:244:1::', '-t', String(seconds))) as { end: { sum_received: { bits_per_second: number } } },
        );
        const gbits = result.end.sum_received.bits_per_second / 1e9;
        const reads = counters.tunIn.packets;
        const datagrams = counters.underlayOut.packets;
        process.stdout.write(`round ${round} ${offload ? 'offload TUN (TSO6)' : 'plain TUN         '}: ${gbits.toFixed(2)} Gbit/s, ${reads} TUN reads -> ${datagrams} datagrams (x${(datagrams / reads).toFixed(2)})\n`);
      }
    }
  } finally {
    server.kill('SIGKILL');
    cleanup();
  }
}

main().catch((error) => {
  process.stderr.write(`${(error as Error).stack}\n`);
  cleanup();
  process.exit(1);
});
