// Child process for test/net/offload.test.ts: runs one scenario inside a network namespace (via `ip netns exec`) and
// prints one JSON line of facts for the parent to assert. Loading it without arguments does nothing.
import { execFileSync } from 'child_process';
import * as dgram from 'dgram';
import * as net from 'net';
import { PacketBatch } from '../../src/io/batch';
import { native } from '../../src/io/native';
import { COALESCE_SCRATCH_BYTES, Tun } from '../../src/io/tun';
import { VIRTIO_NET_HDR_GSO_TCPV4, VIRTIO_NET_HDR_LEN, VirtioNetHeaderView } from '../../src/wire/virtio-net';

const vnet = new VirtioNetHeaderView();
import { UdpSocket } from '../../src/io/udp';
import { parseIPv4 } from '../../src/wire/address';
import { checkIpv4, emitIpv4, IPPROTO_TCP, IPPROTO_UDP, Ipv4View } from '../../src/wire/ipv4';
import { emitTcp, fillTcpChecksum, TCP_ACK, TCP_PSH, tcpChecksumValid } from '../../src/wire/tcp';
import { checkUdp, emitUdp } from '../../src/wire/udp';

const HEADROOM = 64;

function sh(...args: string[]): string {
  return execFileSync(args[0], args.slice(1), { encoding: 'utf8' });
}

function rxPackets(name: string): number {
  return Number(sh('cat', `/sys/class/net/${name}/statistics/rx_packets`).trim());
}

/** A pattern that shows misplaced bytes: position-dependent, not periodic in any segment size. */
function pattern(length: number, seed: number): Buffer {
  const buf = Buffer.alloc(length);
  for (let i = 0; i < length; i++) buf[i] = (i * 7 + (i >>> 8) * 13 + seed) & 0xff;
  return buf;
}

export interface SuperPacketFacts {
  gsoType: number;
  gsoSize: number;
  hdrLen: number;
  csumStart: number;
  csumOffset: number;
  flags: number;
  length: number;
  segments: number;
}

export interface TsoFacts {
  superPackets: SuperPacketFacts[];
  segmentsChecked: number;
  badIpChecksums: number;
  badTcpChecksums: number;
  seqBreaks: number;
  oversize: number;
  payloadMismatches: number;
  unsegmentable: number;
  needsCsumTcp: number;
  needsCsumTcpValid: number;
  udpNeedsCsum: boolean;
  udpChecksumValidAfter: boolean;
  udpChecksumValidBefore: boolean;
  written: number;
  accepted: number;
  received: number;
  intact: boolean;
  error?: string;
}

/**
 * A TCP stream through a TUN opened with offload: the sender (A -> B) and the listener (A, seen from C) are both in
 * this namespace; this process reflects what the TUN reads (B: src C, dst A; C: src B, dst A), segmenting the
 * kernel's super-packets with tcpSegment and writing back with writeCoalesced.
 */
async function tso(name: string): Promise<TsoFacts> {
  const A = parseIPv4('10.77.0.1');
  const B = parseIPv4('10.77.1.2');
  const C = parseIPv4('10.77.1.3');
  sh('ip', 'link', 'set', 'lo', 'up');
  const tun = Tun.open({ name, mtu: 1500, address: A, prefixLength: 24, offload: true });
  sh('ip', 'route', 'add', '10.77.1.0/24', 'dev', name);
  const addon = native();
  const facts: TsoFacts = {
    superPackets: [], segmentsChecked: 0, badIpChecksums: 0, badTcpChecksums: 0, seqBreaks: 0, oversize: 0,
    payloadMismatches: 0, unsegmentable: 0, needsCsumTcp: 0, needsCsumTcpValid: 0, udpNeedsCsum: false,
    udpChecksumValidAfter: false, udpChecksumValidBefore: true, written: 0, accepted: 0, received: 0, intact: false,
  };
  const SLOT = 70000;
  const rx = new PacketBatch(Buffer.alloc(16 * SLOT), 16);
  const out = Buffer.alloc(80000);
  const segLengths = new Uint32Array(64);
  const empty = Buffer.alloc(0);
  const WSLOT = 2048;
  const tx = new PacketBatch(Buffer.alloc(256 * WSLOT), 256);
  const scratch = Buffer.alloc(COALESCE_SCRATCH_BYTES);
  const ip = new Ipv4View();

  /** Rewrites addresses (the reflection) and queues the packet for the TUN. */
  function reflect(buf: Buffer, off: number, len: number): void {
    ip.wrap(buf, off);
    if (ip.protocol !== IPPROTO_TCP || tx.count >= tx.capacity) return;
    const dst = ip.destination;
    if (dst === B) ip.source = C;
    else if (dst === C) ip.source = B;
    else return;
    ip.destination = A;
    ip.checksum = 0;
    ip.fillChecksum();
    fillTcpChecksum(buf, off);
    const at = tx.count * WSLOT + HEADROOM;
    buf.copy(tx.slab, at, off, off + len);
    tx.push(at, len);
  }

  function onSuperPacket(at: number, len: number, gsoSize: number, hdrLen: number, csumStart: number): void {
    const slab = rx.slab;
    const n = addon.tcpSegment(slab, at, len, hdrLen, gsoSize, csumStart, out, 0, empty, 0, 0, segLengths);
    if (n < 0) {
      facts.unsegmentable++;
      return;
    }
    const headers = csumStart + (slab[at + csumStart + 12] >>> 4) * 4;
    let expectedSeq = slab.readUInt32BE(at + csumStart + 4);
    let segOff = 0;
    const payloads: Buffer[] = [];
    for (let i = 0; i < n; i++) {
      const segLen = segLengths[i];
      facts.segmentsChecked++;
      if (checkIpv4(out, segOff, segLen) !== undefined) facts.badIpChecksums++;
      if (!tcpChecksumValid(out, segOff)) facts.badTcpChecksums++;
      if (out.readUInt32BE(segOff + csumStart + 4) !== expectedSeq) facts.seqBreaks++;
      if (segLen > 1500) facts.oversize++;
      payloads.push(out.subarray(segOff + headers, segOff + segLen));
      expectedSeq = (expectedSeq + segLen - headers) >>> 0;
      segOff += segLen;
    }
    if (!Buffer.concat(payloads).equals(slab.subarray(at + headers, at + len))) facts.payloadMismatches++;
    segOff = 0;
    for (let i = 0; i < n; i++) {
      reflect(out, segOff, segLengths[i]);
      segOff += segLengths[i];
    }
    if (facts.superPackets.length < 8) {
      const v = vnet.wrap(slab, at - VIRTIO_NET_HDR_LEN);
      facts.superPackets.push({
        gsoType: v.gsoType, gsoSize, hdrLen, csumStart,
        csumOffset: v.checksumOffset, flags: v.needsChecksum ? 1 : 0, length: len, segments: n,
      });
    }
  }

  function pump(): void {
    for (;;) {
      for (let i = 0; i < rx.capacity; i++) {
        rx.offsets[i] = i * SLOT + HEADROOM;
        rx.lengths[i] = SLOT - HEADROOM;
      }
      rx.count = rx.capacity;
      const n = tun.read(rx);
      if (n === 0) break;
      tx.count = 0;
      for (let i = 0; i < n; i++) {
        const hdr = rx.offsets[i];
        const at = hdr + VIRTIO_NET_HDR_LEN;
        const len = rx.lengths[i] - VIRTIO_NET_HDR_LEN;
        const slab = rx.slab;
        if (len < 20 || slab[at] >>> 4 !== 4) continue;
        const v = vnet.wrap(slab, hdr);
        const needsChecksum = v.needsChecksum;
        const gsoType = v.gsoType;
        const csumStart = v.checksumStart;
        const csumOffset = v.checksumOffset;
        const protocol = slab[at + 9];
        if (gsoType === VIRTIO_NET_HDR_GSO_TCPV4) {
          onSuperPacket(at, len, v.gsoSize, v.headerLength, csumStart);
          continue;
        }
        if (needsChecksum) {
          if (protocol === IPPROTO_UDP) {
            const src = slab.readUInt32BE(at + 12);
            const dst = slab.readUInt32BE(at + 16);
            facts.udpNeedsCsum = true;
            facts.udpChecksumValidBefore = checkUdp(slab, at + 20, len - 20, src, dst) === undefined;
            addon.completeChecksum(slab, at, len, csumStart, csumOffset);
            facts.udpChecksumValidAfter = checkUdp(slab, at + 20, len - 20, src, dst) === undefined;
            continue;
          }
          if (protocol === IPPROTO_TCP) {
            facts.needsCsumTcp++;
            addon.completeChecksum(slab, at, len, csumStart, csumOffset);
            if (tcpChecksumValid(slab, at)) facts.needsCsumTcpValid++;
          }
        }
        reflect(slab, at, len);
      }
      if (tx.count > 0) {
        facts.written += tx.count;
        facts.accepted += tun.writeCoalesced(tx, scratch);
      }
    }
  }

  const TOTAL = 256 * 1024;
  const data = pattern(TOTAL, 5);
  const chunks: Buffer[] = [];
  const server = net.createServer((socket) => {
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
  });
  try {
    tun.watch(pump);
    await new Promise<void>((resolve) => server.listen(5001, '10.77.0.1', resolve));
    // A datagram routed into the TUN: with TUN_F_CSUM its checksum arrives partial (NEEDS_CSUM).
    const udp = dgram.createSocket('udp4');
    await new Promise<void>((resolve, reject) => udp.send(pattern(333, 9), 9999, '10.77.1.9', (e) => (e ? reject(e) : resolve())));
    udp.close();
    const client = net.connect({ host: '10.77.1.2', port: 5001, localAddress: '10.77.0.1' });
    client.on('error', (e) => (facts.error = e.message));
    client.write(data);
    client.end();
    const deadline = Date.now() + 10000;
    while (chunks.reduce((s, c) => s + c.length, 0) < TOTAL && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 20));
    }
    const got = Buffer.concat(chunks);
    facts.received = got.length;
    facts.intact = got.equals(data);
    client.destroy();
  } finally {
    server.close();
    tun.close();
  }
  return facts;
}

export interface GsoFacts {
  groResult: string;
  groBuffers: { length: number; segSize: number }[];
  groIntact: boolean;
  plainResult: string;
  plainDatagrams: number[];
  plainIntact: boolean;
  splitResult: string;
  splitDatagrams: number[];
  splitIntact: boolean;
  noCsumResult: string;
  noCsumTxPackets: number;
}

/** Polls `read` until it reports done or `ms` pass. */
async function drain(read: () => boolean, ms = 3000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!read() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
}

async function gso(): Promise<GsoFacts> {
  sh('ip', 'link', 'set', 'lo', 'up');
  const LO = parseIPv4('127.0.0.1');
  const sender = UdpSocket.open({ address: LO, port: 0 });
  const groReceiver = UdpSocket.open({ address: LO, port: 0, gro: true });
  const plain = UdpSocket.open({ address: LO, port: 0 });
  try {
    const SEG = 1400;
    const data = pattern(40 * SEG, 3);
    const slab = Buffer.alloc(HEADROOM + data.length);
    data.copy(slab, HEADROOM);

    const groResult = sender.sendGso(slab, HEADROOM, data.length, SEG, LO, groReceiver.port);
    const BIG = 65536;
    const rx = new PacketBatch(Buffer.alloc(8 * BIG), 8);
    const segSizes = new Uint32Array(8);
    const groBuffers: { length: number; segSize: number }[] = [];
    const groParts: Buffer[] = [];
    await drain(() => {
      for (let i = 0; i < rx.capacity; i++) {
        rx.offsets[i] = i * BIG;
        rx.lengths[i] = BIG;
      }
      rx.count = rx.capacity;
      const n = groReceiver.recvGro(rx, segSizes);
      for (let i = 0; i < n; i++) {
        groBuffers.push({ length: rx.lengths[i], segSize: segSizes[i] });
        groParts.push(Buffer.from(rx.slab.subarray(rx.offsets[i], rx.offsets[i] + rx.lengths[i])));
      }
      return groParts.reduce((s, p) => s + p.length, 0) >= data.length;
    });

    const receivePlain = async (expected: number, slot: number): Promise<Buffer[]> => {
      const batch = new PacketBatch(Buffer.alloc(64 * slot), 64);
      const parts: Buffer[] = [];
      await drain(() => {
        for (let i = 0; i < batch.capacity; i++) {
          batch.offsets[i] = i * slot;
          batch.lengths[i] = slot;
        }
        batch.count = batch.capacity;
        const n = plain.recv(batch);
        for (let i = 0; i < n; i++) parts.push(Buffer.from(batch.slab.subarray(batch.offsets[i], batch.offsets[i] + batch.lengths[i])));
        return parts.length >= expected;
      });
      return parts;
    };

    const plainResult = sender.sendGso(slab, HEADROOM, data.length, SEG, LO, plain.port);
    const plainParts = await receivePlain(40, 2048);

    // A segment larger than the route's MTU: the kernel refuses this GSO send (EMSGSIZE); the segments go one by one
    // (fragmented by IP and reassembled here).
    sh('ip', 'link', 'set', 'lo', 'mtu', '1500');
    const BIGSEG = 1600;
    const splitResult = sender.sendGso(slab, HEADROOM, 3 * BIGSEG, BIGSEG, LO, plain.port);
    const splitParts = await receivePlain(3, 4096);

    // A device that cannot checksum UDP (veth with tx offload off): older kernels refuse GSO there (EIO: 'fallback',
    // segments sent one by one), this one segments in software ('sent'); either way the 3 segments leave.
    sh('ip', 'link', 'add', 'vxt-ga', 'type', 'veth', 'peer', 'name', 'vxt-gb');
    // No IPv6 on the pair: router solicitations and MLD reports sent after link-up would be counted with our 3.
    sh('sysctl', '-qw', 'net.ipv6.conf.vxt-ga.disable_ipv6=1', 'net.ipv6.conf.vxt-gb.disable_ipv6=1');
    sh('ip', 'addr', 'add', '10.79.0.1/24', 'dev', 'vxt-ga');
    sh('ip', 'link', 'set', 'vxt-ga', 'up');
    sh('ip', 'link', 'set', 'vxt-gb', 'up');
    sh('ethtool', '-K', 'vxt-ga', 'tx', 'off');
    sh('ip', 'neigh', 'add', '10.79.0.3', 'lladdr', '02:00:00:00:00:03', 'dev', 'vxt-ga');
    // Until the link watcher sees the carrier, the device's queue discards what is sent.
    const upBy = Date.now() + 3000;
    while (sh('cat', '/sys/class/net/vxt-ga/operstate').trim() !== 'up' && Date.now() < upBy) {
      await new Promise((r) => setTimeout(r, 20));
    }
    const txBefore = Number(sh('cat', '/sys/class/net/vxt-ga/statistics/tx_packets').trim());
    const vethSender = UdpSocket.open({ address: parseIPv4('10.79.0.1'), port: 0 });
    let noCsumResult: string;
    try {
      noCsumResult = vethSender.sendGso(slab, HEADROOM, 3 * SEG, SEG, parseIPv4('10.79.0.3'), 9999);
    } finally {
      vethSender.close();
    }
    const noCsumTxPackets = Number(sh('cat', '/sys/class/net/vxt-ga/statistics/tx_packets').trim()) - txBefore;

    return {
      groResult,
      groBuffers,
      groIntact: Buffer.concat(groParts).equals(data),
      plainResult,
      plainDatagrams: plainParts.map((p) => p.length),
      plainIntact: Buffer.concat(plainParts).equals(data),
      splitResult,
      splitDatagrams: splitParts.map((p) => p.length),
      splitIntact: Buffer.concat(splitParts).equals(data.subarray(0, 3 * BIGSEG)),
      noCsumResult,
      noCsumTxPackets,
    };
  } finally {
    sender.close();
    groReceiver.close();
    plain.close();
  }
}

export interface CoalesceFacts {
  mixed: { count: number; accepted: number; rxDelta: number };
  badChecksum: { count: number; accepted: number; rxDelta: number };
  gap: { count: number; accepted: number; rxDelta: number };
}

/** 30 segments of one TCP flow between two UDP datagrams, written with writeCoalesced; rx_packets tells the writes. */
function coalesce(name: string): CoalesceFacts {
  const local = parseIPv4('10.78.0.1');
  const peer = parseIPv4('10.78.0.2');
  const tun = Tun.open({ name, mtu: 1500, address: local, prefixLength: 24, offload: true });
  const SLOT = 2048;
  const batch = new PacketBatch(Buffer.alloc(64 * SLOT), 64);
  const scratch = Buffer.alloc(COALESCE_SCRATCH_BYTES);
  const PAYLOAD = 1000;
  const pushTcp = (seq: number, flags: number, payloadLength: number): void => {
    const at = batch.count * SLOT + HEADROOM;
    pattern(payloadLength, seq).copy(batch.slab, at + 40);
    emitIpv4({ source: peer, destination: local, protocol: IPPROTO_TCP, payloadLength: 20 + payloadLength, ttl: 64, dontFragment: true }, batch.slab, at);
    emitTcp({ srcPort: 40000, dstPort: 5002, seq, ack: 777, flags, window: 500, payloadLength, source: peer, destination: local }, batch.slab, at + 20);
    batch.push(at, 40 + payloadLength);
  };
  const pushUdp = (): void => {
    const at = batch.count * SLOT + HEADROOM;
    emitIpv4({ source: peer, destination: local, protocol: IPPROTO_UDP, payloadLength: 8 + 50, ttl: 64 }, batch.slab, at);
    emitUdp({ srcPort: 40001, dstPort: 9, payloadLength: 50, source: peer, destination: local }, batch.slab, at + 20);
    batch.push(at, 78);
  };
  const write = (): { count: number; accepted: number; rxDelta: number } => {
    const before = rxPackets(name);
    const accepted = tun.writeCoalesced(batch, scratch);
    const result = { count: batch.count, accepted, rxDelta: rxPackets(name) - before };
    batch.count = 0;
    return result;
  };
  try {
    const base = 1_000_000;
    pushUdp();
    for (let i = 0; i < 30; i++) pushTcp(base + i * PAYLOAD, i === 29 ? TCP_ACK | TCP_PSH : TCP_ACK, i === 29 ? 400 : PAYLOAD);
    pushUdp();
    const mixed = write();

    for (let i = 0; i < 3; i++) pushTcp(base + i * PAYLOAD, TCP_ACK, PAYLOAD);
    batch.slab[batch.offsets[1] + 36] ^= 0x55; // the middle segment's checksum is wrong: never coalesced
    const badChecksum = write();

    for (let i = 0; i < 4; i++) pushTcp(base + i * PAYLOAD + (i >= 2 ? 1 : 0), TCP_ACK, PAYLOAD); // a hole after 2
    const gap = write();
    return { mixed, badChecksum, gap };
  } finally {
    tun.close();
  }
}

async function main(): Promise<void> {
  const [scenario, name] = process.argv.slice(2);
  let facts: unknown;
  if (scenario === 'tso') facts = await tso(name);
  else if (scenario === 'gso') facts = await gso();
  else if (scenario === 'coalesce') facts = coalesce(name);
  else throw new Error(`unknown scenario ${scenario}`);
  process.stdout.write(`${JSON.stringify(facts)}\n`);
  process.exit(0);
}

if (require.main === module) {
  main().catch((error: unknown) => {
    process.stderr.write(`${error instanceof Error ? error.stack : String(error)}\n`);
    process.exit(1);
  });
}
