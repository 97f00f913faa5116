// The IPv6 underlay socket (issue 12) through the native addon, in throwaway namespaces: batches both ways with
// addrs6, UDP GSO into UDP GRO, IPV6_V6ONLY, and the DF semantics of the kernel's vxlan device over IPv6 (no
// fragmentation at the source unless asked; a 1280-byte link between two namespaces shows both).
import { execFileSync, spawn } from 'child_process';
import * as path from 'path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { native } from '../../src/io/native';
import { UdpSocket } from '../../src/io/udp';
import type { LocalFacts, ReceiverFacts, SenderFacts } from './udp6.child';

const test = suite('udp6 (IPv6 underlay socket)');
const ROOT = path.join(__dirname, '..', '..');
const CHILD = path.join(__dirname, 'udp6.child.ts');
const TAG = `vxt-u6-${process.pid}`;

function ip(...args: string[]): void {
  execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] });
}

/** Runs udp6.child.ts in `netns`; resolves with its last JSON line, calling onLine for each line as it comes. */
function runChild<Facts>(netns: string, args: string[], onLine?: (line: string) => void): Promise<Facts> {
  return new Promise((resolve, reject) => {
    const child = spawn('ip', ['netns', 'exec', netns, process.execPath, '-r', 'tsx/cjs', CHILD, ...args], { cwd: ROOT });
    let stdout = '';
    let stderr = '';
    let pending = '';
    const timer = setTimeout(() => child.kill('SIGKILL'), 20000);
    child.stdout.on('data', (chunk: Buffer) => {
      stdout += chunk.toString();
      pending += chunk.toString();
      let nl: number;
      while ((nl = pending.indexOf('\n')) >= 0) {
        onLine?.(pending.slice(0, nl));
        pending = pending.slice(nl + 1);
      }
    });
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const last = stdout.trim().split('\n').pop() ?? '';
      try {
        const facts = JSON.parse(last) as Facts & { error?: string };
        if (code === 0 && facts.error === undefined) return resolve(facts);
      } catch {
        // falls through to the rejection, which carries the output
      }
      reject(new Error(`udp6 child ${args[0]} exited ${code} ${signal ?? ''}\nstdout: ${stdout}\nstderr: ${stderr}`));
    });
  });
}

/** Namespaces `${TAG}-<name>` with lo up and IPv6 DAD off, deleted whatever `body` does. */
async function withNamespaces(names: string[], body: (ns: string[]) => Promise<void>): Promise<void> {
  const made: string[] = [];
  try {
    for (const name of names) {
      const ns = `${TAG}-${name}`;
      ip('netns', 'add', ns);
      made.push(ns);
      execFileSync('ip', ['netns', 'exec', ns, 'sysctl', '-q', '-w', 'net.ipv6.conf.all.accept_dad=0', 'net.ipv6.conf.default.accept_dad=0']);
      ip('-n', ns, 'link', 'set', 'lo', 'up');
    }
    await body(made);
  } finally {
    for (const ns of made) ip('netns', 'delete', ns);
  }
}

test('two IPv6 sockets: batches both ways with addrs6, sendGso6 coalesced by GRO, V6ONLY, no source fragmentation by default', async () => {
  await withNamespaces(['lo'], async ([ns]) => {
    ip('-n', ns, 'addr', 'add', '2001:db8:6::1/128', 'dev', 'lo', 'nodad');
    ip('-n', ns, 'addr', 'add', '2001:db8:6::2/128', 'dev', 'lo', 'nodad');
    const f = await runChild<LocalFacts>(ns, ['local', '2001:db8:6::1', '2001:db8:6::2']);

    assert.equal(f.family, [6, 6]);
    assert.is(f.mtuDiscoverMode, 2, 'IPV6_PMTUDISC_DO by default');
    assert.ok(f.dontFragment6, 'IPV6_DONTFRAG by default');
    assert.ok(f.portA > 0 && f.portB > 0 && f.portA !== f.portB, 'port 0 binds report the kernel-chosen port');

    assert.is(f.batchSent, 8);
    assert.equal(f.batchReceived.map((d) => d.n), [0, 1, 2, 3, 4, 5, 6, 7], 'every datagram intact, in order');
    assert.equal(f.batchReceived.map((d) => d.length), [100, 250, 400, 550, 700, 850, 1000, 1150]);
    for (const d of f.batchReceived) {
      assert.is(d.from, '2001:db8:6::1', 'the sender read from addrs6');
      assert.is(d.port, f.portA);
    }

    assert.is(f.replySent, 1);
    assert.equal(f.replyReceived, [{ length: 333, from: '2001:db8:6::2', port: f.portB, n: 42, coalesced: false }]);

    assert.is(f.gsoResult, 'sent', 'one UDP_SEGMENT send');
    assert.equal(f.gsoReceived.map((d) => d.n), Array.from({ length: 20 }, (_, n) => 100 + n), '20 segments intact, in order');
    assert.ok(f.gsoReceived.every((d) => d.length === 1200 && d.from === '2001:db8:6::1'));
    assert.ok(f.gsoReceived.some((d) => d.coalesced), 'UDP_GRO handed over coalesced buffers (lo keeps GSO packets whole)');

    assert.match(f.sendGsoOnV6, /sendGso6/);
    assert.is(f.v4MappedPeer.sent, 0, 'an IPv4-mapped peer is refused on a V6ONLY socket');
    assert.ok(f.v4MappedPeer.error !== undefined, `the refusal is named (${f.v4MappedPeer.error})`);
  });
});

test('over a 1280-byte link: a 1400-byte datagram fails with EMSGSIZE by default, is fragmented when DF is off, GSO segments that fit arrive', async () => {
  await withNamespaces(['a', 'b'], async ([nsA, nsB]) => {
    ip('link', 'add', `${TAG}a`, 'mtu', '1280', 'netns', nsA, 'type', 'veth', 'peer', 'name', `${TAG}b`, 'mtu', '1280', 'netns', nsB);
    ip('-n', nsA, 'link', 'set', `${TAG}a`, 'name', 'ul0');
    ip('-n', nsB, 'link', 'set', `${TAG}b`, 'name', 'ul0');
    ip('-n', nsA, 'addr', 'add', '2001:db8:7::1/64', 'dev', 'ul0', 'nodad');
    ip('-n', nsB, 'addr', 'add', '2001:db8:7::2/64', 'dev', 'ul0', 'nodad');
    ip('-n', nsA, 'link', 'set', 'ul0', 'up');
    ip('-n', nsB, 'link', 'set', 'ul0', 'up');

    let ready!: () => void;
    const isReady = new Promise<void>((resolve) => (ready = resolve));
    const receiver = runChild<ReceiverFacts>(nsB, ['receiver', '2001:db8:7::2', '4789', '4', '8000'], (line) => {
      if (line.includes('"ready"')) ready();
    });
    await Promise.race([isReady, receiver]);
    const sender = await runChild<SenderFacts>(nsA, ['sender', '2001:db8:7::1', '2001:db8:7::2', '4789']);
    const { received } = await receiver;

    assert.is(sender.dfSent, 0, 'not sent: IPv6 sources do not fragment unless asked');
    assert.is(sender.dfError, 'EMSGSIZE');
    assert.is(sender.fragmentedSent, 1);
    assert.is(sender.modeAfter, 0, 'IPV6_PMTUDISC_DONT');
    assert.not.ok(sender.dontFragmentAfter);
    assert.is(sender.gsoResult, 'sent');
    assert.equal(received.map((d) => d.n).sort(), [2, 3, 4, 5], 'the fragmented datagram (reassembled) and the three segments; never the DF one');
    assert.equal(received.find((d) => d.n === 2)?.length, 1400);
    assert.ok(received.every((d) => d.from === '2001:db8:7::1'));
  });
});

test('native IPv6 calls refuse short tables and impossible GSO sends (RangeError), nothing sent; busy ports are named', () => {
  const socket = UdpSocket.open({ address: '::1', port: 0 });
  try {
    const addon = native();
    const fd = socket.fd;
    const slab = Buffer.alloc(4096);
    const isRange = (e: unknown): boolean => e instanceof RangeError;
    const offsets = new Uint32Array([0, 2048]);
    const lengths = new Uint32Array([10, 10]);
    const ports = new Uint16Array([9, 9]);
    // 2 packets need 8 words of addrs6: 7 is one short.
    assert.throws(() => addon.udp6Send(fd, slab, offsets, lengths, new Uint32Array(7), ports, 2), isRange);
    assert.throws(() => addon.udp6Recv(fd, slab, offsets, lengths, new Uint32Array(7), ports, 2), isRange);
    assert.throws(() => addon.udp6RecvGro(fd, slab, offsets, lengths, new Uint32Array(7), ports, new Uint32Array(2), 2), isRange);
    assert.throws(() => addon.udp6SendGso(fd, slab, 0, 0, 1400, 0, 0, 0, 1, 9), isRange, 'empty');
    assert.throws(() => addon.udp6SendGso(fd, slab, 0, 65 * 10, 10, 0, 0, 0, 1, 9), isRange, '65 segments');
    assert.throws(() => addon.udp6SendGso(fd, slab, 4000, 200, 100, 0, 0, 0, 1, 9), isRange, 'outside the slab');
    assert.throws(() => addon.udp6SendGso(fd, slab, 0, 100, 100, 0, 0, 0, 1, 70000), isRange, 'port');
    assert.throws(() => addon.udp6Open(0, 0, 0, 1, 70000, 0, 0), isRange);
    const v4 = UdpSocket.open({ address: '127.0.0.1', port: 0 });
    assert.throws(() => v4.sendGso6(slab, 0, 10, 10, 0, 0, 0, 1, 9), /sendGso6 on an IPv4 socket/);
    v4.close();
    let busy = '';
    try {
      UdpSocket.open({ address: '::1', port: socket.port }).close();
    } catch (error) {
      busy = (error as Error).message;
    }
    assert.match(busy, `UDP port ${socket.port} on ::1 is already in use`);
    let absent = '';
    try {
      UdpSocket.open({ address: '2001:db8:ffff::1', port: 0 }).close();
    } catch (error) {
      absent = (error as Error).message;
    }
    assert.match(absent, /cannot bind UDP to 2001:db8:ffff::1: it is not an address of this host/);
  } finally {
    socket.close();
  }
});

test.run();
