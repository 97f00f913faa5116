// Child process for test/net/io.test.ts: runs one scenario (often inside a network namespace, via `ip netns exec`)
// and prints one JSON line of facts for the parent to assert. Loading it without arguments (e.g. from a test
// runner) does nothing.
import { execFileSync } from 'child_process';
import { PacketBatch } from '../../src/io/batch';
import { RawSocket } from '../../src/io/raw';
import { Tun } from '../../src/io/tun';
import { UdpSocket } from '../../src/io/udp';
import { formatIPv4, parseIPv4 } from '../../src/wire/address';

const SLOT = 2048;

function slots(capacity: number): PacketBatch {
  const batch = new PacketBatch(Buffer.alloc(capacity * SLOT), capacity);
  prepare(batch);
  return batch;
}

/** Readies every slot of a batch for a read. */
function prepare(batch: PacketBatch): void {
  for (let i = 0; i < batch.capacity; i++) {
    batch.offsets[i] = i * SLOT;
    batch.lengths[i] = SLOT;
  }
  batch.count = batch.capacity;
}

function checksum(buf: Buffer, start: number, end: number): number {
  let sum = 0;
  for (let i = start; i < end; i += 2) sum += (buf[i] << 8) | (i + 1 < end ? buf[i + 1] : 0);
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

/** Writes an IPv4 + ICMP echo request at `at`; returns its length. */
function echoRequest(buf: Buffer, at: number, src: number, dst: number, id: number, seq: number, payload: Buffer): number {
  const total = 20 + 8 + payload.length;
  buf.fill(0, at, at + total);
  buf[at] = 0x45;
  buf.writeUInt16BE(total, at + 2);
  buf[at + 8] = 64; // TTL
  buf[at + 9] = 1; // ICMP
  buf.writeUInt32BE(src, at + 12);
  buf.writeUInt32BE(dst, at + 16);
  buf.writeUInt16BE(checksum(buf, at, at + 20), at + 10);
  const icmp = at + 20;
  buf[icmp] = 8; // echo request
  buf.writeUInt16BE(id, icmp + 4);
  buf.writeUInt16BE(seq, icmp + 6);
  payload.copy(buf, icmp + 8);
  buf.writeUInt16BE(checksum(buf, icmp, at + total), icmp + 2);
  return total;
}

/** What the parent learns from each scenario (one JSON line on stdout). */
export interface ErrorFacts {
  message: string;
  code?: unknown;
  errno?: unknown;
  syscall?: unknown;
  cause?: string;
}
export interface TunFacts {
  link: { mtu: number; flags: string[]; operstate: string };
  addresses: string[];
  accepted: number;
  reply: { length: number; src: string; dst: string; seq: number; payload: string };
  wakeups: number;
  busy: ErrorFacts;
  notTun: ErrorFacts;
}
export interface RawPacketFacts {
  length: number;
  from: string;
  version: number;
  protocol: number;
  src: string;
  dst: string;
  totalLength: number;
  payloadMatches: boolean;
}
export interface RawFacts {
  rawSent: number;
  received: RawPacketFacts[];
  udp: { sent: number; received: number; length: number; from: string; port: number; senderPort: number };
}
export interface UnprivilegedFacts {
  uid: number | undefined;
  tun: ErrorFacts;
  raw: ErrorFacts;
}
export interface ExitFacts {
  received: number;
}

function errorFacts(action: () => unknown): ErrorFacts {
  try {
    action();
  } catch (error) {
    const e = error as Error & { code?: unknown; errno?: unknown; syscall?: unknown };
    return { message: e.message, code: e.code, errno: e.errno, syscall: e.syscall, cause: e.cause === undefined ? undefined : String(e.cause) };
  }
  return { message: 'no error' };
}

function ip(...args: string[]): string {
  return execFileSync('ip', args, { encoding: 'utf8' });
}

function timeout(ms: number, what: string): NodeJS.Timeout {
  return setTimeout(() => {
    console.log(JSON.stringify({ timeout: what }));
    process.exit(3);
  }, ms);
}

/** TUN in a namespace: configuration as `ip` sees it, a ping answered by the kernel, and the open errors. */
function tunScenario(name: string): void {
  const local = parseIPv4('10.99.0.1');
  const peer = parseIPv4('10.99.0.2');
  const tun = Tun.open({ name, mtu: 1400, address: local, prefixLength: 24 });
  const link = JSON.parse(ip('-j', 'link', 'show', 'dev', name))[0];
  const addr = JSON.parse(ip('-j', 'addr', 'show', 'dev', name))[0];
  const busy = errorFacts(() => Tun.open({ name, mtu: 1400 }).close());
  const notTun = errorFacts(() => Tun.open({ name: 'lo', mtu: 1400 }).close());

  // [a packet the kernel rejects (IP version 0), then the echo request]: the first is skipped, the second taken.
  const out = slots(2);
  out.count = 0;
  out.slab.fill(0, 0, 40);
  out.push(0, 40);
  const payload = Buffer.from('vxtun tun echo payload');
  out.push(SLOT, echoRequest(out.slab, SLOT, peer, local, 0x7a7a, 1, payload));

  const rx = slots(8);
  const timer = timeout(5000, 'no echo reply from the TUN');
  let wakeups = 0;
  tun.watch(() => {
    wakeups++;
    prepare(rx);
    const n = tun.read(rx);
    for (let i = 0; i < n; i++) {
      const at = rx.offsets[i];
      const p = rx.slab;
      if (p[at] >> 4 !== 4 || p[at + 9] !== 1 || p[at + 20] !== 0 || p.readUInt16BE(at + 24) !== 0x7a7a) continue;
      clearTimeout(timer);
      const facts: TunFacts = {
        link: { mtu: link.mtu, flags: link.flags, operstate: link.operstate },
        addresses: (addr.addr_info as Array<{ family: string; local: string; prefixlen: number }>)
          .filter((a) => a.family === 'inet')
          .map((a) => `${a.local}/${a.prefixlen}`),
        accepted,
        reply: {
          length: rx.lengths[i],
          src: formatIPv4(p.readUInt32BE(at + 12)),
          dst: formatIPv4(p.readUInt32BE(at + 16)),
          seq: p.readUInt16BE(at + 26),
          payload: p.subarray(at + 28, at + rx.lengths[i]).toString(),
        },
        wakeups,
        busy,
        notTun,
      };
      tun.close();
      tun.close(); // idempotent
      console.log(JSON.stringify(facts));
      return;
    }
  });
  const accepted = tun.write(out);
}

/** Raw IP-in-IP between two addresses on lo, and per-message send errors skipped, inside a namespace. */
function rawScenario(): void {
  ip('link', 'set', 'lo', 'up');
  const a = parseIPv4('10.99.1.1');
  const b = parseIPv4('10.99.1.2');
  ip('addr', 'add', '10.99.1.1/32', 'dev', 'lo');
  ip('addr', 'add', '10.99.1.2/32', 'dev', 'lo');
  const unreachable = parseIPv4('198.51.100.7'); // no route in this namespace
  const sender = RawSocket.open({ protocol: 4, address: a });
  const receiver = RawSocket.open({ protocol: 4, address: b });
  const udpA = UdpSocket.open({ address: a, port: 0 });
  const udpB = UdpSocket.open({ address: b, port: 0 });

  const count = 16;
  const tx = slots(count + 1);
  tx.count = 0;
  for (let i = 0; i < count; i++) {
    const at = i * SLOT + 64;
    const length = 20 + i * 37;
    for (let j = 0; j < length; j++) tx.slab[at + j] = (i * 7 + j) & 0xff;
    tx.push(at, length, i === 3 ? unreachable : b);
  }
  const rawSent = sender.send(tx);
  const udpBatch = slots(3);
  udpBatch.count = 0;
  udpBatch.push(0, 10, unreachable, 4789);
  udpBatch.push(SLOT, 11, b, udpB.port);
  udpBatch.push(2 * SLOT, 12, unreachable, 4789);
  const udpSent = udpA.send(udpBatch);

  const rx = slots(32);
  const received: RawPacketFacts[] = [];
  const timer = timeout(5000, 'raw packets did not arrive');
  receiver.watch(() => {
    prepare(rx);
    const n = receiver.recv(rx);
    for (let i = 0; i < n; i++) {
      const at = rx.offsets[i];
      const p = rx.slab;
      const headerLength = (p[at] & 15) * 4;
      const sentIndex = received.length < 3 ? received.length : received.length + 1; // index 3 was unreachable
      const payload = p.subarray(at + headerLength, at + rx.lengths[i]);
      const expected = tx.slab.subarray(tx.offsets[sentIndex], tx.offsets[sentIndex] + tx.lengths[sentIndex]);
      received.push({
        length: rx.lengths[i],
        from: formatIPv4(rx.addrs[i]),
        version: p[at] >> 4,
        protocol: p[at + 9],
        src: formatIPv4(p.readUInt32BE(at + 12)),
        dst: formatIPv4(p.readUInt32BE(at + 16)),
        totalLength: p.readUInt16BE(at + 2),
        payloadMatches: payload.equals(expected),
      });
    }
    if (received.length < count - 1) return;
    clearTimeout(timer);
    prepare(rx);
    const udpReceived = udpB.recv(rx);
    const udpFacts: RawFacts['udp'] = { sent: udpSent, received: udpReceived, length: rx.lengths[0], from: formatIPv4(rx.addrs[0]), port: rx.ports[0], senderPort: udpA.port };
    for (const s of [sender, receiver, udpA, udpB]) s.close();
    const facts: RawFacts = { rawSent, received, udp: udpFacts };
    console.log(JSON.stringify(facts));
  });
}

/** Run unprivileged: the errors a user without CAP_NET_ADMIN / CAP_NET_RAW meets. */
function unprivilegedScenario(name: string): void {
  const tun = errorFacts(() => Tun.open({ name, mtu: 1400 }));
  const raw = errorFacts(() => RawSocket.open({ protocol: 4, address: 0 }));
  const facts: UnprivilegedFacts = { uid: process.getuid?.(), tun, raw };
  console.log(JSON.stringify(facts));
}

/** A watched socket that receives once and closes: the process must then exit by itself. */
function exitScenario(throwInCallback: boolean): void {
  const lo = parseIPv4('127.0.0.1');
  const socket = UdpSocket.open({ address: lo, port: 0, recvBufferBytes: 0, sendBufferBytes: 0 });
  const batch = slots(4);
  socket.watch(() => {
    prepare(batch);
    if (socket.recv(batch) === 0) return;
    socket.close();
    const facts: ExitFacts = { received: batch.lengths[0] };
    console.log(JSON.stringify(facts));
    if (throwInCallback) throw new Error('thrown inside the watcher callback');
  });
  batch.count = 0;
  batch.push(0, 5, lo, socket.port);
  socket.send(batch);
}

function main(): void {
  const [scenario, name = ''] = process.argv.slice(2);
  switch (scenario) {
    case 'tun':
      return tunScenario(name);
    case 'raw':
      return rawScenario();
    case 'unprivileged':
      return unprivilegedScenario(name);
    case 'exit':
      return exitScenario(false);
    case 'exit-throw':
      return exitScenario(true);
    default:
      throw new Error(`unknown scenario "${scenario}"`);
  }
}

if (require.main === module) main();
