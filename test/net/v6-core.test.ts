// IPv6 through a real TUN (issue 12 items 1-2), against the kernel's own VXLAN device programmed as flannel programs
// flannel-v6.<VNI> (route <subnet> via <subnet>:: onlink, neighbor, FDB), over an IPv4 underlay between two throwaway
// namespaces: pings both ways, the kernel's Neighbor Solicitation answered when its neighbor entry is not permanent,
// and Packet Too Big reaching the sender's kernel, which lowers its path MTU. Everything made is removed, even on failure.
import { type ChildProcess, execFileSync, spawn } from 'child_process';
import * as path from 'path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import type { V6ChildConfig } from './v6-core.child';

const test = suite('v6-core: IPv6 through a real TUN, with a kernel flannel-v6 style peer');
const ROOT = path.join(__dirname, '..', '..');
const CHILD = path.join(__dirname, 'v6-core.child.ts');
const K = `vxt-v6c-${process.pid}-k`;
const V = `vxt-v6c-${process.pid}-v`;
const KERNEL_MAC = '0e:00:00:00:01:06';
const OUR_MAC6 = '0e:00:00:00:02:06';

function sh(netns: string | undefined, ...argv: string[]): string {
  const full = netns === undefined ? argv : ['ip', 'netns', 'exec', netns, ...argv];
  return execFileSync(full[0], full.slice(1), { encoding: 'utf8', timeout: 20_000, stdio: ['ignore', 'pipe', 'pipe'] });
}

function tryRun(netns: string, ...argv: string[]): { ok: boolean; out: string } {
  try {
    return { ok: true, out: sh(netns, ...argv) };
  } catch (error) {
    const e = error as { stdout?: string; stderr?: string };
    return { ok: false, out: `${e.stdout ?? ''}${e.stderr ?? ''}` };
  }
}

let child: ChildProcess | undefined;
let childOut = '';

function cleanup(): void {
  if (child !== undefined && child.exitCode === null) child.kill('SIGKILL');
  for (const ns of [K, V]) {
    try {
      execFileSync('ip', ['netns', 'delete', ns], { stdio: 'ignore' });
    } catch {
      // not made, or already gone
    }
  }
}

async function startEngine(config: V6ChildConfig): Promise<void> {
  child = spawn('ip', ['netns', 'exec', V, process.execPath, '-r', 'tsx/cjs', CHILD, JSON.stringify(config)], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  let err = '';
  child.stderr!.on('data', (d) => (err += d));
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`engine not ready in 30 s: ${childOut} ${err}`)), 30_000);
    child!.stdout!.on('data', (d) => {
      childOut += d;
      if (childOut.includes('ready\n')) {
        clearTimeout(timer);
        resolve();
      }
    });
    child!.on('exit', (code) => reject(new Error(`engine exited ${code}: ${err}`)));
  });
}

async function stopEngine(): Promise<Record<string, unknown>> {
  const c = child!;
  const exited = new Promise<void>((resolve) => c.on('exit', () => resolve()));
  c.kill('SIGTERM');
  await exited;
  const last = childOut.trim().split('\n').pop()!;
  return JSON.parse(last) as Record<string, unknown>;
}

test.before(async () => {
  cleanup();
  execFileSync('ip', ['netns', 'add', K]);
  execFileSync('ip', ['netns', 'add', V]);
  sh(undefined, 'ip', 'link', 'add', 'vxt6ck', 'netns', K, 'type', 'veth', 'peer', 'name', 'vxt6cv', 'netns', V);
  sh(K, 'ip', 'addr', 'add', '192.0.2.1/24', 'dev', 'vxt6ck');
  sh(V, 'ip', 'addr', 'add', '192.0.2.2/24', 'dev', 'vxt6cv');
  for (const [ns, dev] of [[K, 'vxt6ck'], [V, 'vxt6cv']]) {
    sh(ns, 'ip', 'link', 'set', 'lo', 'up');
    sh(ns, 'ip', 'link', 'set', dev, 'up');
  }
  // The kernel node, as flannel programs flannel-v6.1 (here over the IPv4 underlay: the vxtun peer has no PublicIPv6).
  sh(K, 'ip', 'link', 'add', 'vxt6kv', 'address', KERNEL_MAC, 'type', 'vxlan', 'id', '1', 'local', '192.0.2.1', 'dstport', '8472', 'nolearning');
  sh(K, 'ip', 'link', 'set', 'vxt6kv', 'mtu', '1450', 'up');
  sh(K, 'ip', '-6', 'addr', 'add', 'fd00:10:244:1::/128', 'dev', 'vxt6kv', 'nodad');
  sh(K, 'ip', '-6', 'neigh', 'replace', 'fd00:10:244:2::', 'lladdr', OUR_MAC6, 'dev', 'vxt6kv', 'nud', 'permanent');
  sh(K, 'bridge', 'fdb', 'append', OUR_MAC6, 'dst', '192.0.2.2', 'dev', 'vxt6kv', 'self', 'permanent');
  sh(K, 'ip', '-6', 'route', 'add', 'fd00:10:244:2::/64', 'via', 'fd00:10:244:2::', 'dev', 'vxt6kv', 'onlink');
  await startEngine({
    tun: 'vxt6c0',
    tunMtu: 1500, // larger than the overlay on purpose: the kernel hands us packets the path cannot carry
    overlayMtu: 1450,
    underlay: '192.0.2.2',
    port: 8472,
    subnet: '10.17.2.0/24',
    subnet6: 'fd00:10:244:2::/64',
    vtepMac: '0e:00:00:00:02:00',
    vtepMac6: OUR_MAC6,
    network6: 'fd00:10:244::/56',
    peer: { underlay: '192.0.2.1', subnet6: 'fd00:10:244:1::/64', vtepMac6: KERNEL_MAC },
  });
});

test.after(() => cleanup());

test('ping -6 both ways between the kernel VTEP and our TUN', () => {
  const fromKernel = tryRun(K, 'ping', '-6', '-c', '3', '-i', '0.2', '-W', '2', '-I', 'fd00:10:244:1::', 'fd00:10:244:2::');
  assert.ok(fromKernel.ok, fromKernel.out);
  assert.match(fromKernel.out, '3 received');
  const fromUs = tryRun(V, 'ping', '-6', '-c', '3', '-i', '0.2', '-W', '2', 'fd00:10:244:1::');
  assert.ok(fromUs.ok, fromUs.out);
  assert.match(fromUs.out, '3 received');
});

test('a kernel peer whose neighbor entry is not permanent asks (NS) and our Advertisement answers it', () => {
  sh(K, 'ip', '-6', 'neigh', 'del', 'fd00:10:244:2::', 'dev', 'vxt6kv');
  // Multicast (the solicitation) goes to every VTEP in the all-zeros FDB entry, as a flannel-less kernel setup would.
  sh(K, 'bridge', 'fdb', 'append', '00:00:00:00:00:00', 'dst', '192.0.2.2', 'dev', 'vxt6kv', 'self', 'permanent');
  const ping = tryRun(K, 'ping', '-6', '-c', '3', '-i', '0.2', '-W', '2', '-I', 'fd00:10:244:1::', 'fd00:10:244:2::');
  assert.ok(ping.ok, ping.out);
  const neigh = sh(K, 'ip', '-6', 'neigh', 'show', 'fd00:10:244:2::', 'dev', 'vxt6kv');
  assert.match(neigh, `lladdr ${OUR_MAC6}`);
  assert.not.match(neigh, 'PERMANENT', 'learned, not programmed');
  assert.not.match(neigh, 'FAILED');
});

test('Packet Too Big reaches the sender: its kernel reports it and lowers the path MTU to the overlay MTU', () => {
  const big = tryRun(V, 'ping', '-6', '-c', '1', '-W', '2', '-s', '1452', '-M', 'do', 'fd00:10:244:1::');
  assert.not.ok(big.ok, 'a 1500-byte packet (the TUN MTU) does not fit a 1450-byte overlay');
  assert.match(big.out, /[Pp]acket too big.*mtu[ =]1450/);
  const route = sh(V, 'ip', '-6', 'route', 'get', 'fd00:10:244:1::');
  assert.match(route, 'mtu 1450');
  const fits = tryRun(V, 'ping', '-6', '-c', '1', '-W', '2', '-s', '1402', '-M', 'do', 'fd00:10:244:1::');
  assert.ok(fits.ok, fits.out);
});

test('the engine counted what it did: an NA sent, one Packet Too Big, no IPv6 drops but the expected ones', async () => {
  const counters = await stopEngine();
  assert.ok((counters.neighborAdvertisements as number) >= 1, JSON.stringify(counters));
  assert.ok((counters.icmpErrors as number) >= 1, JSON.stringify(counters));
  const drops = counters.drops as Record<string, number>;
  assert.ok(drops['mtu/too-big'] >= 1, JSON.stringify(drops));
  for (const key of Object.keys(drops)) {
    // The kernel sends link-local multicast (router solicitations, MLD reports) into the TUN: not carried, counted.
    if (key === 'tun-ipv6/multicast') continue;
    assert.ok(!key.startsWith('inner-ipv6/') && !key.startsWith('tun-ipv6/') && !key.startsWith('route6/'), `unexpected drop ${key}: ${JSON.stringify(drops)}`);
  }
});

test.run();
