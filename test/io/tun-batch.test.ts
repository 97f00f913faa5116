// The TUN batch paths of the native addon without root: a SOCK_SEQPACKET pair stands in for the TUN fd (one whole
// message per read or write, as a TUN), so tunRead / tunWrite / tunWriteCoalesced run their real system calls,
// one per packet (readv/writev) and one batch per io_uring_enter (native/uring.cc), and the two must agree.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { PacketBatch } from '../../src/io/batch';
import { COALESCE_UDP, native } from '../../src/io/native';
import { parseIPv4 } from '../../src/wire/address';
import { emitIpv4, IPPROTO_TCP, IPPROTO_UDP } from '../../src/wire/ipv4';
import { emitTcp, TCP_ACK, TCP_PSH } from '../../src/wire/tcp';
import { parseIPv6 } from '../../src/wire/address6';
import { foldChecksum, onesComplementSum, pseudoHeaderSum6 } from '../../src/wire/checksum';
import { emitIpv6 } from '../../src/wire/ipv6';
import { emitUdp, udpChecksumValid } from '../../src/wire/udp';
import { VIRTIO_NET_HDR_F_NEEDS_CSUM, VIRTIO_NET_HDR_LEN, VirtioNetHeaderView } from '../../src/wire/virtio-net';

const test = suite('TUN batches: readv/writev and io_uring on a seqpacket pair');
const SRC = parseIPv4('10.9.0.2');
const DST = parseIPv4('10.9.0.1');
const SLOT = 2048;
const HEADROOM = 64;
const GSO_UDP_L4 = 5;

interface Pair {
  fd: number;
  peer: number;
  ring: number | undefined;
}

/** Runs `body` on a fresh pair, once without a ring and once with one (when the addon has liburing). */
function bothWays(name: string, body: (pair: Pair) => void): void {
  const addon = native();
  const modes: Array<'readv' | 'uring'> = addon.uringAvailable ? ['readv', 'uring'] : ['readv'];
  for (const mode of modes) {
    test(`${name} (${mode})`, () => {
      const [fd, peer] = addon.seqpacketPair();
      const ring = mode === 'uring' ? addon.uringOpen(64) : undefined;
      try {
        body({ fd, peer, ring });
      } finally {
        if (ring !== undefined) addon.uringClose(ring);
        addon.close(fd);
        addon.close(peer);
      }
    });
  }
}

/** Every message waiting on `fd`, one syscall each (the reference reader). */
function drain(fd: number): Buffer[] {
  const slab = Buffer.alloc(70000);
  const out: Buffer[] = [];
  for (;;) {
    const lengths = new Uint32Array([slab.length - 1]);
    if (native().tunRead(fd, slab, new Uint32Array([0]), lengths, 1) === 0) return out;
    out.push(Buffer.from(slab.subarray(0, lengths[0])));
  }
}

function slots(count: number, capacity = SLOT - HEADROOM): PacketBatch {
  const batch = new PacketBatch(Buffer.alloc(count * SLOT), count);
  for (let i = 0; i < count; i++) batch.push(i * SLOT + HEADROOM, capacity);
  return batch;
}

bothWays('tunWrite: 100 packets in order, one message each; more than the ring holds', ({ fd, peer, ring }) => {
  const batch = new PacketBatch(Buffer.alloc(100 * SLOT), 100);
  for (let i = 0; i < 100; i++) {
    const at = i * SLOT + HEADROOM;
    batch.slab.fill(i, at, at + 20 + i);
    batch.push(at, 20 + i);
  }
  assert.is(native().tunWrite(fd, batch.slab, batch.offsets, batch.lengths, batch.count, ring), 100);
  const got = drain(peer);
  assert.is(got.length, 100);
  got.forEach((message, i) => assert.ok(message.equals(Buffer.alloc(20 + i, i)), `message ${i}`));
});

bothWays('tunRead: batches in order, slots filled first, an empty queue returns 0 at once, oversize reported', ({ fd, peer, ring }) => {
  const addon = native();
  const idle = slots(64);
  assert.is(addon.tunRead(peer, idle.slab, idle.offsets, idle.lengths, 64, ring), 0, 'nothing waiting: 0, no wait');
  const out = new PacketBatch(Buffer.alloc(150 * 100), 150);
  for (let i = 0; i < 150; i++) {
    out.slab.fill(i & 0xff, i * 100, i * 100 + 40 + (i % 50));
    out.push(i * 100, 40 + (i % 50));
  }
  assert.is(addon.tunWrite(fd, out.slab, out.offsets, out.lengths, 150), 150);
  const seen: number[] = [];
  for (let call = 0; call < 5 && seen.length < 150; call++) {
    const batch = slots(64);
    const n = addon.tunRead(peer, batch.slab, batch.offsets, batch.lengths, 64, ring);
    for (let i = 0; i < n; i++) {
      const k = seen.length;
      const message = batch.slab.subarray(batch.offsets[i], batch.offsets[i] + batch.lengths[i]);
      assert.ok(message.equals(Buffer.alloc(40 + (k % 50), k & 0xff)), `packet ${k} in order and intact`);
      seen.push(k);
    }
    // The slots of a batch stay a permutation of the ones offered: none lost, none doubled.
    const offered = Array.from({ length: 64 }, (_, i) => i * SLOT + HEADROOM);
    assert.equal(Array.from(batch.offsets).sort((a, b) => a - b), offered);
  }
  assert.is(seen.length, 150);
  // A message longer than its slot comes back with a length above the capacity (the spare byte), never clamped.
  const big = Buffer.alloc(300, 7);
  assert.is(addon.tunWrite(fd, big, new Uint32Array([0]), new Uint32Array([300]), 1), 1);
  const small = slots(4, 100);
  assert.is(addon.tunRead(peer, small.slab, small.offsets, small.lengths, 4, ring), 1);
  assert.ok(small.lengths[0] > 100, `oversize reported as ${small.lengths[0]}`);
});

/** A UDP datagram of one flow at slot i: `payload` bytes of a pattern seeded by i; returns its offset. */
function pushUdp(batch: PacketBatch, payload: number, seed: number, dstPort = 5001): void {
  const at = batch.count * SLOT + HEADROOM;
  for (let k = 0; k < payload; k++) batch.slab[at + 28 + k] = (k * 7 + seed * 13) & 0xff;
  emitIpv4({ source: SRC, destination: DST, protocol: IPPROTO_UDP, payloadLength: 8 + payload, ttl: 64, dontFragment: true }, batch.slab, at);
  emitUdp({ srcPort: 40000, dstPort, payloadLength: payload, source: SRC, destination: DST }, batch.slab, at + 20);
  batch.push(at, 28 + payload);
}

function payloadOf(batch: PacketBatch, i: number): Buffer {
  return Buffer.from(batch.slab.subarray(batch.offsets[i] + 28, batch.offsets[i] + batch.lengths[i]));
}

const vnet = new VirtioNetHeaderView();

bothWays('tunWriteCoalesced: TCP/IPv6 runs become one GSO_TCPV6 super-packet (payload length, partial pseudo-header sum, PSH of the last)', ({ fd, peer, ring }) => {
  const batch = new PacketBatch(Buffer.alloc(8 * SLOT), 8);
  const push = (i: number, payload: number, flags: number, seq: number): void => {
    const at = i * SLOT + HEADROOM;
    emitIpv6({ source: parseIPv6('fd00:17:0:1::2'), destination: parseIPv6('fd00:17:0:2::2'), nextHeader: IPPROTO_TCP, payloadLength: 20 + payload, hopLimit: 63 }, batch.slab, at);
    batch.slab.fill(i + 1, at + 60, at + 60 + payload);
    emitTcp({ srcPort: 1, dstPort: 2, seq, ack: 5, flags, window: 100, payloadLength: payload }, batch.slab, at + 40);
    const sum = pseudoHeaderSum6(batch.slab, at + 8, at + 24, 20 + payload, IPPROTO_TCP);
    batch.slab.writeUInt16BE(foldChecksum(onesComplementSum(batch.slab, at + 40, at + 60 + payload, sum)), at + 56);
    batch.push(at, 60 + payload);
  };
  push(0, 1000, TCP_ACK, 1000);
  push(1, 1000, TCP_ACK, 2000);
  push(2, 400, TCP_ACK | TCP_PSH, 3000);
  push(3, 1000, TCP_ACK, 9000); // not the next seq: alone
  assert.is(native().tunWriteCoalesced(fd, batch.slab, batch.offsets, batch.lengths, batch.count, undefined, 0, ring), 4);
  const got = drain(peer);
  assert.is(got.length, 2, 'a run of three, then one alone');
  const head = vnet.wrap(got[0]!, 0);
  assert.is(head.gsoType, 4, 'GSO_TCPV6');
  assert.is(head.gsoSize, 1000);
  assert.is(head.headerLength, 60);
  assert.is(head.checksumStart, 40);
  assert.is(head.checksumOffset, 16);
  const pkt = got[0]!.subarray(VIRTIO_NET_HDR_LEN);
  assert.is(pkt.length, 60 + 2400);
  assert.is(pkt.readUInt16BE(4), 20 + 2400, 'payload length of the whole');
  assert.is(pkt[53]! & TCP_PSH, TCP_PSH, 'PSH of the last member');
  assert.ok(pkt.subarray(60, 1060).equals(Buffer.alloc(1000, 1)) && pkt.subarray(2060).equals(Buffer.alloc(400, 3)), 'payloads gathered in order');
  // The checksum field holds the pseudo-header sum of the whole (partial, not complemented), as the kernel expects.
  const partial = ~foldChecksum(pseudoHeaderSum6(pkt, 8, 24, 20 + 2400, IPPROTO_TCP)) & 0xffff;
  assert.is(pkt.readUInt16BE(56), partial);
  assert.is(vnet.wrap(got[1]!, 0).gsoType, 0, 'the stray segment alone, no GSO');
});

bothWays('tunWriteCoalesced + COALESCE_UDP: one UDP_L4 super-packet per flow run, gathered intact', ({ fd, peer, ring }) => {
  const batch = new PacketBatch(Buffer.alloc(128 * SLOT), 128);
  for (let i = 0; i < 9; i++) pushUdp(batch, 1000, i);
  pushUdp(batch, 300, 9); // a short last one ends the run
  pushUdp(batch, 1000, 10, 5002); // another flow: alone
  pushUdp(batch, 500, 11);
  pushUdp(batch, 600, 12); // larger than the run's first: a new run
  const payloads = Array.from({ length: batch.count }, (_, i) => payloadOf(batch, i));
  assert.is(native().tunWriteCoalesced(fd, batch.slab, batch.offsets, batch.lengths, batch.count, undefined, COALESCE_UDP, ring), 13);
  const got = drain(peer);
  assert.is(got.length, 4, 'run of 10, the other flow, then two alone');
  const head = vnet.wrap(got[0], 0);
  assert.is(head.gsoType, GSO_UDP_L4);
  assert.is(head.gsoSize, 1000);
  assert.is(head.headerLength, 28);
  assert.is(head.checksumStart, 20);
  assert.is(head.checksumOffset, 6);
  assert.ok(head.needsChecksum);
  const superPacket = got[0].subarray(VIRTIO_NET_HDR_LEN);
  assert.is(superPacket.readUInt16BE(2), 28 + 9 * 1000 + 300, 'IPv4 total length');
  assert.is(superPacket.readUInt16BE(24), 8 + 9 * 1000 + 300, 'UDP length');
  assert.ok(superPacket.subarray(28).equals(Buffer.concat(payloads.slice(0, 10))), 'payloads in order');
  // The field holds the partial (pseudo-header) sum: finished over the whole super-packet, it is a valid datagram.
  native().completeChecksum(superPacket, 0, superPacket.length, 20, 6);
  assert.ok(udpChecksumValid(superPacket, 0));
  for (const [k, input] of [[1, 10], [2, 11], [3, 12]]) {
    assert.is(got[k][0] + got[k][1], 0, `message ${k}: a zeroed virtio header`);
    assert.ok(got[k].subarray(VIRTIO_NET_HDR_LEN + 28).equals(payloads[input]));
  }
});

bothWays('tunWriteCoalesced: UDP alone without the flag; at most 64 per run; a bad checksum never joins', ({ fd, peer, ring }) => {
  const addon = native();
  const batch = new PacketBatch(Buffer.alloc(128 * SLOT), 128);
  for (let i = 0; i < 3; i++) pushUdp(batch, 200, i);
  assert.is(addon.tunWriteCoalesced(fd, batch.slab, batch.offsets, batch.lengths, 3, undefined, 0, ring), 3);
  assert.is(drain(peer).length, 3, 'no flag: one write each');

  batch.count = 0;
  for (let i = 0; i < 70; i++) pushUdp(batch, 100, i);
  assert.is(addon.tunWriteCoalesced(fd, batch.slab, batch.offsets, batch.lengths, 70, undefined, COALESCE_UDP, ring), 70);
  const runs = drain(peer);
  assert.equal(runs.map((m) => (m.length - VIRTIO_NET_HDR_LEN - 28) / 100), [64, 6]);

  batch.count = 0;
  for (let i = 0; i < 3; i++) pushUdp(batch, 100, i);
  batch.slab[batch.offsets[1] + 30] ^= 0x55; // payload changed: the checksum no longer matches
  assert.is(addon.tunWriteCoalesced(fd, batch.slab, batch.offsets, batch.lengths, 3, undefined, COALESCE_UDP, ring), 3);
  assert.is(drain(peer).length, 3, 'a corrupt datagram is written alone, so the kernel still checks it');
});

bothWays('tunWriteCoalesced: TCP runs gathered as before (flags of the last, no copy into scratch)', ({ fd, peer, ring }) => {
  const batch = new PacketBatch(Buffer.alloc(16 * SLOT), 16);
  for (let i = 0; i < 5; i++) {
    const at = batch.count * SLOT + HEADROOM;
    batch.slab.fill(i + 1, at + 40, at + 40 + 800);
    emitIpv4({ source: SRC, destination: DST, protocol: IPPROTO_TCP, payloadLength: 20 + 800, ttl: 64, dontFragment: true }, batch.slab, at);
    emitTcp({ srcPort: 1, dstPort: 2, seq: 1000 + i * 800, ack: 5, flags: TCP_ACK, window: 100, payloadLength: 800, source: SRC, destination: DST }, batch.slab, at + 20);
    batch.push(at, 840);
  }
  assert.is(native().tunWriteCoalesced(fd, batch.slab, batch.offsets, batch.lengths, 5, undefined, COALESCE_UDP, ring), 5);
  const got = drain(peer);
  assert.is(got.length, 1);
  assert.is(got[0][1], 1, 'GSO_TCPV4');
  assert.is(got[0][0] & VIRTIO_NET_HDR_F_NEEDS_CSUM, VIRTIO_NET_HDR_F_NEEDS_CSUM);
  const payload = got[0].subarray(VIRTIO_NET_HDR_LEN + 40);
  assert.is(payload.length, 4000);
  for (let i = 0; i < 5; i++) assert.ok(payload.subarray(i * 800, (i + 1) * 800).equals(Buffer.alloc(800, i + 1)));
});

test('uringOpen: bad sizes are RangeErrors; closing twice is harmless', () => {
  const addon = native();
  assert.throws(() => addon.uringOpen(0), (e: unknown) => e instanceof RangeError);
  assert.throws(() => addon.uringOpen(5000), (e: unknown) => e instanceof RangeError);
  if (!addon.uringAvailable) return;
  const ring = addon.uringOpen(8);
  addon.uringClose(ring);
  addon.uringClose(ring);
  const [fd, peer] = addon.seqpacketPair();
  try {
    const batch = slots(1);
    assert.throws(() => addon.tunRead(peer, batch.slab, batch.offsets, batch.lengths, 1, ring), (e: unknown) => (e as { code?: string }).code === 'EBADF', 'a closed ring');
  } finally {
    addon.close(fd);
    addon.close(peer);
  }
});

test.run();
