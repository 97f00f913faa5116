// Child process for test/net/udp6.test.ts: one IPv6 underlay socket scenario run inside a network namespace (via
// `ip netns exec`), printing one JSON line of facts for the parent to assert. Loading it without arguments does nothing.
import { PacketBatch } from '../../src/io/batch';
import { UdpSocket } from '../../src/io/udp';
import { formatIPv6, ipv6FromWords, ipv6Words, parseIPv6 } from '../../src/wire/address6';

/** 64 KB slots: a GRO buffer may hold up to 64 coalesced datagrams. */
const SLOT = 65536;

function slots(capacity: number, slot = SLOT): PacketBatch {
  const batch = new PacketBatch(Buffer.alloc(capacity * slot), capacity);
  prepare(batch, slot);
  return batch;
}

function prepare(batch: PacketBatch, slot = SLOT): void {
  for (let i = 0; i < batch.capacity; i++) {
    batch.offsets[i] = i * slot;
    batch.lengths[i] = slot;
  }
  batch.count = batch.capacity;
}

/** Datagram `n` of a run: `length` bytes, byte k = (n * 7 + k) & 0xff, so any reordering or corruption shows. */
function fill(buf: Buffer, at: number, n: number, length: number): void {
  for (let k = 0; k < length; k++) buf[at + k] = (n * 7 + k) & 0xff;
}

function intact(buf: Buffer, at: number, n: number, length: number): boolean {
  for (let k = 0; k < length; k++) if (buf[at + k] !== ((n * 7 + k) & 0xff)) return false;
  return true;
}

function setPeer6(batch: PacketBatch, i: number, words: readonly number[]): void {
  batch.addrs6.set(words, 4 * i);
}

function peerOf(batch: PacketBatch, i: number): string {
  const a = batch.addrs6;
  return formatIPv6(ipv6FromWords(a[4 * i], a[4 * i + 1], a[4 * i + 2], a[4 * i + 3]));
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** One datagram as the receiver saw it (GRO buffers split into their segments). */
export interface Datagram6 {
  length: number;
  from: string;
  port: number;
  /** Which datagram of the sender's numbering it is intact as, or -1. */
  n: number;
  /** It came in a GRO buffer holding several datagrams. */
  coalesced: boolean;
}

/**
 * Receives on `socket` with recvGro until `want` datagrams arrived (then `settleMs` more, to see extras) or `ms`.
 * `numbering` maps a datagram's length to candidate numbers: each arrival is checked against them.
 */
async function receiveAll(socket: UdpSocket, want: number, ms: number, candidates: number[], settleMs = 200): Promise<Datagram6[]> {
  const got: Datagram6[] = [];
  const batch = slots(8);
  const segSizes = new Uint32Array(8);
  const deadline = Date.now() + ms;
  let settleUntil = Infinity;
  while (Date.now() < Math.min(deadline, settleUntil)) {
    prepare(batch);
    const count = socket.gro ? socket.recvGro(batch, segSizes) : socket.recv(batch);
    for (let i = 0; i < count; i++) {
      const off = batch.offsets[i];
      const len = batch.lengths[i];
      const seg = socket.gro ? segSizes[i] : 0;
      const step = seg > 0 ? seg : len;
      for (let at = off; at < off + len; at += step) {
        const length = Math.min(step, off + len - at);
        const n = candidates.find((c) => intact(batch.slab, at, c, length)) ?? -1;
        got.push({ length, from: peerOf(batch, i), port: batch.ports[i], n, coalesced: seg > 0 });
      }
    }
    if (got.length >= want && settleUntil === Infinity) settleUntil = Date.now() + settleMs;
    if (count === 0) await sleep(5);
  }
  return got;
}

export interface LocalFacts {
  family: [number, number];
  mtuDiscoverMode: number;
  dontFragment6: boolean;
  /** udp6Send of 8 datagrams A -> B: how many the kernel took, and what B got. */
  batchSent: number;
  batchReceived: Datagram6[];
  /** B -> A (A without GRO): recv fills addrs6 and ports. */
  replySent: number;
  replyReceived: Datagram6[];
  /** sendGso6 of 20 x 1200 bytes A -> B. */
  gsoResult: string;
  gsoReceived: Datagram6[];
  portA: number;
  portB: number;
  sendGsoOnV6: string;
  v4MappedPeer: { sent: number; error: string | undefined };
}

/** Two sockets on two addresses of one namespace (carried by lo): batches both ways, GSO into GRO. */
async function localScenario(addressA: string, addressB: string): Promise<void> {
  const a = UdpSocket.open({ address: addressA, port: 0 });
  const b = UdpSocket.open({ address: parseIPv6(addressB), port: 0, gro: true });
  const wordsA = ipv6Words(a.address as bigint);
  const wordsB = ipv6Words(b.address as bigint);

  const out = slots(8, 2048);
  out.count = 0;
  for (let n = 0; n < 8; n++) {
    const length = 100 + n * 150;
    fill(out.slab, n * 2048, n, length);
    out.push(n * 2048, length, 0, b.port);
    setPeer6(out, n, wordsB);
  }
  const batchSent = a.send(out);
  const batchReceived = await receiveAll(b, 8, 3000, [0, 1, 2, 3, 4, 5, 6, 7]);

  out.count = 0;
  fill(out.slab, 0, 42, 333);
  out.push(0, 333, 0, a.port);
  setPeer6(out, 0, wordsA);
  const replySent = b.send(out);
  const replyReceived = await receiveAll(a, 1, 3000, [42]);

  const gso = Buffer.alloc(20 * 1200);
  for (let n = 0; n < 20; n++) fill(gso, n * 1200, 100 + n, 1200);
  const gsoResult = a.sendGso6(gso, 0, gso.length, 1200, wordsB[0], wordsB[1], wordsB[2], wordsB[3], b.port);
  const gsoReceived = await receiveAll(b, 20, 3000, Array.from({ length: 20 }, (_, n) => 100 + n));

  let sendGsoOnV6 = 'no error';
  try {
    a.sendGso(gso, 0, 1200, 1200, 0x7f000001, b.port);
  } catch (error) {
    sendGsoOnV6 = (error as Error).message;
  }
  // An IPv4-mapped destination (::ffff:127.0.0.1): IPV6_V6ONLY refuses it per message (ENETUNREACH), a counted drop.
  out.count = 0;
  out.push(0, 10, 0, 9);
  setPeer6(out, 0, [0, 0, 0xffff, 0x7f000001]);
  const mappedSent = a.send(out);
  const v4MappedPeer = { sent: mappedSent, error: a.takeSendError() };

  const facts: LocalFacts = {
    family: [a.family, b.family],
    mtuDiscoverMode: a.mtuDiscoverMode,
    dontFragment6: a.dontFragment6,
    batchSent,
    batchReceived,
    replySent,
    replyReceived,
    gsoResult,
    gsoReceived,
    portA: a.port,
    portB: b.port,
    sendGsoOnV6,
    v4MappedPeer,
  };
  a.close();
  b.close();
  console.log(JSON.stringify(facts));
}

export interface ReceiverFacts {
  received: Datagram6[];
}

/** Binds [address]:port with GRO, says "ready", then reports what arrives within `ms`. */
async function receiverScenario(address: string, port: string, want: string, ms: string): Promise<void> {
  const socket = UdpSocket.open({ address, port: Number(port), gro: true });
  console.log(JSON.stringify({ ready: true }));
  const received = await receiveAll(socket, Number(want), Number(ms), [1, 2, 3, 4, 5, 6], 500);
  socket.close();
  const facts: ReceiverFacts = { received };
  console.log(JSON.stringify(facts));
}

export interface SenderFacts {
  /** A 1400-byte datagram over a 1280-byte link, with the default (no fragmentation): sent count and error. */
  dfSent: number;
  dfError: string | undefined;
  /** The same after setDontFragment(false): the kernel fragments it at the source. */
  fragmentedSent: number;
  modeAfter: number;
  dontFragmentAfter: boolean;
  /** sendGso6 of 3 x 1200-byte segments (each fits the 1280 link with 48 bytes of headers). */
  gsoResult: string;
}

/** Sends to [address]:port over the namespace's veth: the DF cases, then a GSO send. */
function senderScenario(local: string, address: string, port: string): void {
  const socket = UdpSocket.open({ address: local, port: 0 });
  const words = ipv6Words(parseIPv6(address));
  const out = slots(1, 2048);
  out.count = 0;
  fill(out.slab, 0, 1, 1400);
  out.push(0, 1400, 0, Number(port));
  setPeer6(out, 0, words);
  const dfSent = socket.send(out);
  const dfError = socket.takeSendError();
  socket.setDontFragment(false);
  fill(out.slab, 0, 2, 1400);
  const fragmentedSent = socket.send(out);
  const modeAfter = socket.mtuDiscoverMode;
  const dontFragmentAfter = socket.dontFragment6;
  socket.setDontFragment(true);
  const gso = Buffer.alloc(3 * 1200);
  for (let n = 0; n < 3; n++) fill(gso, n * 1200, 3 + n, 1200);
  const gsoResult = socket.sendGso6(gso, 0, gso.length, 1200, words[0], words[1], words[2], words[3], Number(port));
  socket.close();
  const facts: SenderFacts = { dfSent, dfError, fragmentedSent, modeAfter, dontFragmentAfter, gsoResult };
  console.log(JSON.stringify(facts));
}

function main(): void {
  const [scenario, ...args] = process.argv.slice(2);
  const fail = (error: unknown): void => {
    console.log(JSON.stringify({ error: String((error as Error).stack ?? error) }));
    process.exit(2);
  };
  try {
    switch (scenario) {
      case 'local':
        localScenario(args[0], args[1]).catch(fail);
        break;
      case 'receiver':
        receiverScenario(args[0], args[1], args[2], args[3]).catch(fail);
        break;
      case 'sender':
        senderScenario(args[0], args[1], args[2]);
        break;
      default:
        fail(new Error(`unknown scenario ${scenario}`));
    }
  } catch (error) {
    fail(error);
  }
}

if (require.main === module) main();
