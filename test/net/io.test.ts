// Real I/O through the native addon: TUN devices and raw sockets inside throwaway network namespaces (through
// test/net/io.child.ts run with `ip netns exec`), UDP on 127.0.0.1 in this process, and errors users meet.
import { execFile, execFileSync } from 'child_process';
import * as path from 'path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { PacketBatch } from '../../src/io/batch';
import { isSystemError, native } from '../../src/io/native';
import { Tun } from '../../src/io/tun';
import { UdpSocket } from '../../src/io/udp';
import { parseIPv4 } from '../../src/wire/address';
import type { ExitFacts, RawFacts, TunFacts, UnprivilegedFacts } from './io.child';

const test = suite('io (native TUN, UDP, raw)');
const ROOT = path.join(__dirname, '..', '..');
const CHILD = path.join(__dirname, 'io.child.ts');
const LOOPBACK = parseIPv4('127.0.0.1');
const SLOT = 2048;

interface ChildResult<Facts> {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  /** The child's last stdout line as JSON (the scenario's facts interface in io.child.ts); {} if unparsable. */
  facts: Facts;
}

/** Runs io.child.ts with `args`, optionally behind a command prefix (ip netns exec ..., setpriv ...). */
function runChild<Facts>(args: string[], prefix: string[] = []): Promise<ChildResult<Facts>> {
  const command = [...prefix, process.execPath, '-r', 'tsx/cjs', CHILD, ...args];
  return new Promise((resolve) => {
    execFile(command[0], command.slice(1), { cwd: ROOT, timeout: 15000 }, (error, stdout, stderr) => {
      const code = error === null ? 0 : typeof error.code === 'number' ? error.code : null;
      const lastLine = stdout.trim().split('\n').pop() ?? '';
      let facts = {} as Facts;
      try {
        facts = JSON.parse(lastLine) as Facts;
      } catch {
        // asserted by the caller through `facts` being empty; stdout/stderr are in the message
      }
      resolve({ code, signal: error?.signal ?? null, stdout, stderr, facts });
    });
  });
}

/** Creates `vxt-io-<pid>-<tag>`, runs `body`, and deletes the namespace whatever happens. */
async function withNamespace(tag: string, body: (namespace: string) => Promise<void>): Promise<void> {
  const namespace = `vxt-io-${process.pid}-${tag}`;
  execFileSync('ip', ['netns', 'add', namespace]);
  try {
    await body(namespace);
  } finally {
    execFileSync('ip', ['netns', 'delete', namespace]);
  }
}

function explain(result: ChildResult<unknown>): string {
  return `child exited ${result.code} ${result.signal ?? ''}\nstdout: ${result.stdout}\nstderr: ${result.stderr}`;
}

function readySlots(batch: PacketBatch): void {
  for (let i = 0; i < batch.capacity; i++) {
    batch.offsets[i] = i * SLOT;
    batch.lengths[i] = SLOT;
  }
  batch.count = batch.capacity;
}

/** Resolves on the first watcher call after which `done()` holds; rejects after `ms`. */
function until(socket: UdpSocket, onReadable: () => boolean, ms = 3000): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('watcher did not report the datagrams in time')), ms);
    socket.watch(() => {
      if (!onReadable()) return;
      clearTimeout(timer);
      resolve();
    });
  });
}

test('TUN: options are checked before any system call', () => {
  assert.throws(() => Tun.open({ name: 'vxt-a-name-too-long', mtu: 1400 }), /TUN name "vxt-a-name-too-long" is too long: Linux allows 15 characters/);
  assert.throws(() => Tun.open({ name: 'vxt/0', mtu: 1400 }), /may only contain/);
  assert.throws(() => Tun.open({ name: '', mtu: 1400 }), /must not be empty/);
  assert.throws(() => Tun.open({ name: 'vxt0', mtu: 67 }), /MTU must be an integer from 68 to 65535, got 67/);
  assert.throws(() => Tun.open({ name: 'vxt0', mtu: 1400, address: parseIPv4('10.0.0.1'), prefixLength: 33 }), /prefix length/);
});

test('TUN in a namespace: configured as asked, and an echo request written in is answered by the kernel', async () => {
  await withNamespace('tun', async (namespace) => {
    const name = `vxt-t${process.pid}`;
    const result = await runChild<TunFacts>(['tun', name], ['ip', 'netns', 'exec', namespace]);
    assert.is(result.code, 0, explain(result));
    const facts = result.facts;
    assert.is(facts.link.mtu, 1400);
    assert.ok(facts.link.flags.includes('UP'), `flags ${facts.link.flags}`);
    assert.equal(facts.addresses, ['10.99.0.1/24']);
    assert.is(facts.accepted, 1, 'the packet with IP version 0 is skipped, the echo request accepted');
    assert.equal(facts.reply, { length: 50, src: '10.99.0.1', dst: '10.99.0.2', seq: 1, payload: 'vxtun tun echo payload' });
    assert.ok(facts.wakeups >= 1);
    assert.is(facts.busy.message, `TUN device "${name}" is already in use by another process`);
    assert.is(facts.busy.code, 'EBUSY');
    assert.is(facts.busy.errno, 16);
    assert.is(facts.busy.syscall, 'ioctl(TUNSETIFF)');
    assert.match(facts.busy.cause ?? '', /ioctl\(TUNSETIFF\) failed: Device or resource busy \(EBUSY\)/);
    assert.is(facts.notTun.message, '"lo" exists and is not a TUN device');
  });
});

test('UDP: a batch of 64 datagrams of different sizes crosses in one send and arrives through the watcher', async () => {
  const sender = UdpSocket.open({ address: LOOPBACK, port: 0 });
  const receiver = UdpSocket.open({ address: LOOPBACK, port: 0 });
  try {
    assert.ok(sender.port > 0 && receiver.port > 0 && sender.port !== receiver.port);
    const tx = new PacketBatch(Buffer.alloc(64 * SLOT), 64);
    for (let i = 0; i < 64; i++) {
      const at = i * SLOT + 64; // as the engine sends: after headroom
      const length = 1 + i * 23;
      for (let j = 0; j < length; j++) tx.slab[at + j] = (i + j * 3) & 0xff;
      tx.push(at, length, LOOPBACK, receiver.port);
    }
    const rx = new PacketBatch(Buffer.alloc(64 * SLOT), 64);
    const got: Buffer[] = [];
    let wakeups = 0;
    const arrived = until(receiver, () => {
      wakeups++;
      readySlots(rx);
      const n = receiver.recv(rx);
      for (let i = 0; i < n; i++) {
        assert.is(rx.addrs[i], LOOPBACK);
        assert.is(rx.ports[i], sender.port);
        got.push(Buffer.from(rx.slab.subarray(rx.offsets[i], rx.offsets[i] + rx.lengths[i])));
      }
      return got.length >= 64;
    });
    assert.is(sender.send(tx), 64);
    await arrived;
    assert.ok(wakeups >= 1);
    assert.is(got.length, 64);
    for (let i = 0; i < 64; i++) {
      assert.ok(got[i].equals(tx.slab.subarray(tx.offsets[i], tx.offsets[i] + tx.lengths[i])), `datagram ${i} differs`);
    }
  } finally {
    sender.close();
    receiver.close();
  }
});

test('UDP: an oversized message is skipped, the rest sent; a datagram larger than its slot reads as length 0', async () => {
  const sender = UdpSocket.open({ address: LOOPBACK, port: 0 });
  const receiver = UdpSocket.open({ address: LOOPBACK, port: 0 });
  try {
    const tx = new PacketBatch(Buffer.alloc(80000), 3);
    tx.push(0, 10, LOOPBACK, receiver.port);
    tx.push(100, 70000, LOOPBACK, receiver.port); // over 65507: EMSGSIZE for that message only
    tx.push(70200, 1000, LOOPBACK, receiver.port);
    assert.is(sender.send(tx), 2);
    const rx = new PacketBatch(Buffer.alloc(4 * SLOT), 4);
    const lengths: number[] = [];
    const arrived = until(receiver, () => {
      readySlots(rx);
      rx.lengths[1] = 100; // too small for the 1000-byte datagram
      const n = receiver.recv(rx);
      for (let i = 0; i < n; i++) lengths.push(rx.lengths[i]);
      return lengths.length >= 2;
    });
    await arrived;
    assert.equal(lengths, [10, 0]);
  } finally {
    sender.close();
    receiver.close();
  }
});

test('UDP: a busy port fails with a clear message and keeps code/errno/syscall', () => {
  const first = UdpSocket.open({ address: LOOPBACK, port: 0 });
  try {
    let caught: unknown;
    try {
      UdpSocket.open({ address: LOOPBACK, port: first.port }).close();
    } catch (error) {
      caught = error;
    }
    assert.ok(isSystemError(caught, 'EADDRINUSE'), String(caught));
    if (!isSystemError(caught)) return;
    assert.is(caught.message, `UDP port ${first.port} on 127.0.0.1 is already in use (another vxtun agent, or a kernel vxlan device?)`);
    assert.is(caught.errno, 98);
    assert.is(caught.syscall, 'bind');
    assert.ok(isSystemError(caught.cause, 'EADDRINUSE'));
    assert.throws(() => UdpSocket.open({ address: parseIPv4('192.0.2.1'), port: 0 }), /192\.0\.2\.1: it is not an address of this host/);
  } finally {
    first.close();
  }
});

test('native: bad arguments throw TypeError / RangeError instead of crashing', () => {
  const addon = native();
  const socket = UdpSocket.open({ address: LOOPBACK, port: 0 });
  try {
    const fd = socket.fd;
    const slab = Buffer.alloc(4096);
    const u32 = () => new Uint32Array(4);
    const ports = new Uint16Array(4);
    const call = (f: () => unknown) => () => f();
    assert.throws(call(() => addon.udpSend('3' as unknown as number, slab, u32(), u32(), u32(), ports, 1)), (e: Error) => e instanceof TypeError && /fd must be a number/.test(e.message));
    assert.throws(call(() => addon.udpSend(-1, slab, u32(), u32(), u32(), ports, 1)), TypeError);
    assert.throws(call(() => addon.udpRecv(fd, slab, new Uint8Array(4) as unknown as Uint32Array, u32(), u32(), ports, 1)), (e: Error) => e instanceof TypeError && /offsets must be a Uint32Array/.test(e.message));
    assert.throws(call(() => addon.udpRecv(fd, 'slab' as unknown as Buffer, u32(), u32(), u32(), ports, 1)), TypeError);
    assert.throws(call(() => addon.udpSend(fd, slab, u32(), u32(), u32(), ports, 5)), RangeError);
    assert.throws(call(() => addon.udpSend(fd, slab, new Uint32Array([4000]), new Uint32Array([200]), u32(), ports, 1)), (e: Error) => e instanceof RangeError && /outside the slab/.test(e.message));
    assert.throws(call(() => addon.tunRead(fd, slab, new Uint32Array([0xffffffff]), new Uint32Array([0xffffffff]), 1)), RangeError);
    assert.throws(call(() => addon.tunOpen(undefined as unknown as string)), TypeError);
    assert.throws(call(() => addon.udpOpen(LOOPBACK, 70000, 0, 0)), RangeError);
    assert.throws(call(() => new addon.FdWatcher(fd, 'not a function' as unknown as () => void)), TypeError);
    assert.throws(call(() => new addon.FdWatcher(1 << 30, () => {})), (e: unknown) => isSystemError(e));
    // count 0 is a valid empty batch
    assert.is(addon.udpRecv(fd, slab, u32(), u32(), u32(), ports, 0), 0);
  } finally {
    socket.close();
  }
  socket.close(); // idempotent
  const batch = new PacketBatch(Buffer.alloc(SLOT), 1);
  assert.throws(() => socket.recv(batch), new RegExp(`UDP socket 127\\.0\\.0\\.1:${socket.port} is closed`));
  assert.throws(() => socket.watch(() => {}), /is closed/);
});

test('raw IP-in-IP in a namespace: a batch sent arrives with the outer header; unreachable messages are skipped', async () => {
  await withNamespace('raw', async (namespace) => {
    const result = await runChild<RawFacts>(['raw'], ['ip', 'netns', 'exec', namespace]);
    assert.is(result.code, 0, explain(result));
    const { rawSent, received, udp } = result.facts;
    assert.is(rawSent, 15, 'the message to an unroutable address is skipped');
    assert.is(received.length, 15);
    for (const packet of received) {
      assert.equal(
        { from: packet.from, version: packet.version, protocol: packet.protocol, src: packet.src, dst: packet.dst },
        { from: '10.99.1.1', version: 4, protocol: 4, src: '10.99.1.1', dst: '10.99.1.2' },
      );
      assert.is(packet.totalLength, packet.length);
      assert.ok(packet.payloadMatches, `payload of a ${packet.length}-byte packet differs`);
    }
    assert.is(received[0].length, 20 + 20);
    assert.equal(udp, { sent: 1, received: 1, length: 11, from: '10.99.1.1', port: udp.senderPort, senderPort: udp.senderPort });
  });
});

test('unprivileged: opening a TUN or a raw socket says which privilege is missing', async () => {
  const result = await runChild<UnprivilegedFacts>(['unprivileged', `vxt-u${process.pid}`], ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups']);
  assert.is(result.code, 0, explain(result));
  const { uid, tun, raw } = result.facts;
  assert.is(uid, 65534);
  assert.is(tun.message, 'opening /dev/net/tun needs root or CAP_NET_ADMIN');
  assert.ok(tun.code === 'EACCES' || tun.code === 'EPERM', String(tun.code));
  assert.ok(tun.syscall === 'open' || tun.syscall === 'ioctl(TUNSETIFF)', String(tun.syscall));
  assert.is(raw.message, 'raw IP sockets need root or CAP_NET_RAW');
  assert.is(raw.code, 'EPERM');
  assert.is(raw.syscall, 'socket');
});

test('watchers: once closed, nothing keeps the process alive; an exception in the callback is reported', async () => {
  const started = Date.now();
  const [clean, thrown] = await Promise.all([runChild<ExitFacts>(['exit']), runChild<ExitFacts>(['exit-throw'])]);
  assert.is(clean.code, 0, explain(clean));
  assert.is(clean.facts.received, 5);
  assert.ok(Date.now() - started < 10000);
  assert.is(thrown.code, 1, explain(thrown));
  assert.is(thrown.facts.received, 5);
  assert.match(thrown.stderr, /thrown inside the watcher callback/);
});

test.run();
