// The offload data path, end to end over the in-memory fakes (no root): a TSO super-packet read from an offload TUN
// (virtio_net_hdr first) is segmented and sent (VXLAN: UDP GSO; IP-in-IP: the raw socket's sendSegments, or the
// earlier segment-then-sendmmsg path), received (VXLAN: one UDP GRO buffer, split; IP-in-IP: one raw datagram per
// segment), and written to the far TUN coalesced back into one super-packet by the real native coalescer
// (FakeTun.writeCoalesced runs native tunWriteCoalesced into a file). Plus checksum completion and the coalescer's
// refusal to merge a corrupt segment.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { Counters } from '../../src/dataplane/counters';
import { createEncapsulation } from '../../src/dataplane/encap';
import { SegmentSender } from '../../src/dataplane/segment-sender';
import { type EncapName, ForwardingTables } from '../../src/dataplane/tables';
import { FakeNetwork } from '../../src/io/fake';
import { parseCidr } from '../../src/wire/address';
import { emitIpipOuter } from '../../src/wire/ipip';
import { IPV4_HEADER_LEN, IPPROTO_TCP, checkIpv4, emitIpv4, parseIpv4 } from '../../src/wire/ipv4';
import { TCP_ACK, TCP_PSH, emitTcp, fillTcpChecksum, parseTcp, tcpChecksumValid } from '../../src/wire/tcp';
import { VIRTIO_NET_HDR_F_NEEDS_CSUM, VIRTIO_NET_HDR_GSO_NONE, VIRTIO_NET_HDR_GSO_TCPV4 } from '../../src/wire/virtio-net';
import { type FakeNode, type FakeNodeOptions, fakePair, vxlanFrame } from '../support/fake-nodes';
import { ip } from '../support/packets';

const Offload = suite('offload path (TSO, GSO/segments, GRO, coalesced TUN writes)');

/** Overlay MTU of the fake nodes (1450) minus IPv4 and TCP headers. */
const MSS = 1410;
const SEQ = 0x7fff_f000;

async function settle(): Promise<void> {
  for (let turn = 0; turn < 200; turn++) await new Promise((resolve) => setImmediate(resolve));
}

/** A TCP/IPv4 packet 10.17.1.5:5001 -> 10.17.2.7:44000, `payload` bytes of pattern from stream offset `at`. */
function tcpPacket(payload: number, at = 0, flags = TCP_ACK | TCP_PSH): Buffer {
  const packet = Buffer.alloc(IPV4_HEADER_LEN + 20 + payload);
  for (let i = 0; i < payload; i++) packet[40 + i] = ((at + i) * 13 + ((at + i) >> 9)) & 0xff;
  emitTcp({ srcPort: 5001, dstPort: 44000, seq: (SEQ + at) >>> 0, ack: 99, flags, window: 1000, payloadLength: payload }, packet, IPV4_HEADER_LEN);
  emitIpv4({ source: ip('10.17.1.5'), destination: ip('10.17.2.7'), protocol: IPPROTO_TCP, payloadLength: 20 + payload, ttl: 64, dontFragment: true, identification: 500 }, packet, 0);
  fillTcpChecksum(packet, 0);
  return packet;
}

/** A read from an offload TUN: virtio_net_hdr (little-endian on x86, as TUN writes it) + packet. */
function tunRead(packet: Buffer, gsoType: number, gsoSize: number, needsChecksum: boolean): Buffer {
  const read = Buffer.alloc(10 + packet.length);
  read[0] = needsChecksum ? VIRTIO_NET_HDR_F_NEEDS_CSUM : 0;
  read[1] = gsoType;
  read.writeUInt16LE(40, 2);
  read.writeUInt16LE(gsoSize, 4);
  read.writeUInt16LE(20, 6);
  read.writeUInt16LE(16, 8);
  packet.copy(read, 10);
  return read;
}

/** As the kernel leaves a TSO or NEEDS_CSUM packet: the TCP checksum field holds only the pseudo-header sum. */
function partialChecksum(packet: Buffer): Buffer {
  const p = Buffer.from(packet);
  const tcpLen = p.length - 20;
  let sum = 0;
  for (let i = 12; i < 20; i += 2) sum += p.readUInt16BE(i);
  sum += IPPROTO_TCP + tcpLen;
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  p.writeUInt16BE(sum, 36);
  return p;
}

function pair(encap: EncapName, extra: FakeNodeOptions = {}) {
  const pair = fakePair(encap, { offload: true, gro: encap === 'vxlan', gso: encap === 'vxlan', ...extra });
  pair.net.gsoArrivesWhole = true;
  pair.a.engine.start();
  pair.b.engine.start();
  return pair;
}

function assertClean(...nodes: FakeNode[]): void {
  for (const n of nodes) {
    assert.is(n.engine.counters.drops.total, 0, `${n.tun.name}: no drops`);
    assert.is(n.pool.available, n.pool.capacity, `${n.tun.name}: every slot came back`);
  }
}

/** The packets `written` rebuild the super-packet's payload, each a valid segment of at most MSS bytes. */
function assertSegmentsRebuild(written: Buffer[], original: Buffer): void {
  const payloads: Buffer[] = [];
  written.forEach((p, i) => {
    assert.is(checkIpv4(p, 0, p.length), undefined, `segment ${i} IPv4`);
    assert.ok(tcpChecksumValid(p, 0), `segment ${i} TCP checksum`);
    const tcp = parseTcp(p, 20, p.length - 20);
    assert.ok(p.length - 40 <= MSS, `segment ${i} within the MSS`);
    assert.is(tcp.seq, (SEQ + payloads.reduce((n, b) => n + b.length, 0)) >>> 0, `segment ${i} seq`);
    payloads.push(p.subarray(40));
  });
  assert.ok(Buffer.concat(payloads).equals(original.subarray(40)), 'the payloads rebuild the original');
}

for (const encap of ['vxlan', 'ipip'] as const) {
  Offload(`${encap}: a 64 KB TSO super-packet crosses as MSS segments and reaches the far TUN as one coalesced write`, async () => {
    const { net, a, b } = pair(encap);
    const original = tcpPacket(64000);
    a.tun.inject(tunRead(partialChecksum(original), VIRTIO_NET_HDR_GSO_TCPV4, MSS, true));
    await settle();
    const segments = Math.ceil(64000 / MSS);
    const wire = net.log.filter((d) => d.to === b.underlayIp);
    assert.is(wire.length, segments, 'one underlay datagram per segment');
    if (encap === 'vxlan') {
      assert.ok(a.socket.gsoCalls >= 1 && a.socket.gsoCalls <= 2, `UDP GSO: ${a.socket.gsoCalls} calls for ${segments} segments`);
    } else {
      assert.is(a.socket.segmentCalls, 1, 'one sendSegments call for the whole super-packet');
    }
    assert.is(a.engine.counters.underlayOut.packets, segments);
    assertSegmentsRebuild(b.tun.written, original);
    assert.is(b.tun.writes.length, 1, 'the segments went into the TUN as one write');
    const write = b.tun.writes[0];
    assert.is(write.gsoType, VIRTIO_NET_HDR_GSO_TCPV4);
    assert.is(write.gsoSize, MSS);
    assert.is(write.flags, VIRTIO_NET_HDR_F_NEEDS_CSUM);
    assert.equal([write.csumStart, write.csumOffset], [20, 16]);
    assert.is(write.packet.readUInt16BE(2), original.length);
    assert.ok(write.packet.subarray(40).equals(original.subarray(40)), 'the coalesced payload is the original');
    assert.ok((write.packet[33] & TCP_PSH) !== 0, 'PSH of the last segment kept');
    assertClean(a, b);
  });

  Offload(`${encap}: a packet whose checksum the kernel left partial (NEEDS_CSUM, no GSO) arrives with it completed`, async () => {
    const { a, b } = pair(encap);
    const original = tcpPacket(300);
    a.tun.inject(tunRead(partialChecksum(original), VIRTIO_NET_HDR_GSO_NONE, 0, true));
    await settle();
    assert.equal(b.tun.written, [original]);
    assert.is(b.tun.writes.length, 1);
    assert.is(b.tun.writes[0].gsoType, VIRTIO_NET_HDR_GSO_NONE, 'one packet: written alone, zeroed header');
    assertClean(a, b);
  });

  Offload(`${encap}: a received run with a corrupt segment is coalesced around it, never through it`, async () => {
    const { a, b } = pair(encap);
    const packets = Array.from({ length: 8 }, (_, i) => tcpPacket(MSS, i * MSS, TCP_ACK));
    packets[7] = tcpPacket(MSS, 7 * MSS); // PSH on the last, as TCP sends a burst's end
    packets[4][100] ^= 0xff; // payload corrupted after the checksum was made
    if (encap === 'vxlan') {
      const frames = packets.map((p) => vxlanFrame(p, a.mac, b.mac));
      b.socket.injectGro(Buffer.concat(frames), frames[0].length, a.underlayIp, 40000);
    } else {
      for (const p of packets) {
        const outer = Buffer.alloc(20 + p.length);
        p.copy(outer, 20);
        emitIpipOuter({ source: a.underlayIp, destination: b.underlayIp }, outer, 0);
        b.socket.inject(outer, a.underlayIp);
      }
    }
    await settle();
    assert.is(b.tun.written.length, 8, 'all eight go to the kernel, which checks the corrupt one itself');
    const shapes = b.tun.writes.map((w) => (w.gsoType === VIRTIO_NET_HDR_GSO_TCPV4 ? (w.packet.length - 40) / MSS : 1));
    assert.equal(shapes, [4, 1, 3], 'segments 0-3 coalesced, 4 alone, 5-7 coalesced');
    assert.ok(!tcpChecksumValid(b.tun.writes[1].packet, 0), 'the corrupt segment keeps its bad checksum');
    assertClean(b);
  });
}

Offload('ipip: with nativeSegments off (--ipip-segment-batch off) super-packets take the segment-then-sendmmsg path, same bytes', async () => {
  const { net, a, b } = pair('ipip', { nativeSegments: false });
  const original = tcpPacket(30000);
  a.tun.inject(tunRead(partialChecksum(original), VIRTIO_NET_HDR_GSO_TCPV4, MSS, true));
  await settle();
  assert.is(a.socket.segmentCalls, 0);
  assert.is(net.log.filter((d) => d.to === b.underlayIp).length, Math.ceil(30000 / MSS));
  assertSegmentsRebuild(b.tun.written, original);
  assert.is(b.tun.writes.length, 1);
  assertClean(a, b);
});

Offload('ipip: a super-packet sendSegments cannot cut is dropped and counted, the engine goes on', async () => {
  const { a, b } = pair('ipip');
  const bad = tcpPacket(5000);
  bad.writeUInt16BE(4000, 2); // IPv4 total length disagrees with the read
  bad.writeUInt16BE(0, 10);
  bad.writeUInt16BE(parseIpv4Checksum(bad), 10);
  a.tun.inject(tunRead(bad, VIRTIO_NET_HDR_GSO_TCPV4, MSS, true));
  a.tun.inject(tunRead(tcpPacket(200), VIRTIO_NET_HDR_GSO_NONE, 0, false));
  await settle();
  const drops = a.engine.counters.drops;
  assert.is(drops.total, 1);
  assert.is(drops.get('gso', 'cannot-segment'), 1, 'the native call refused it: its IPv4 length is not the read length');
  assert.is(b.tun.written.length, 1, 'the packet after it went through');
});

Offload('SegmentSender: segments a raw socket did not take (a full socket) are counted from the segment count', () => {
  const net = new FakeNetwork();
  const socket = net.raw(ip('192.0.2.11'));
  const real = socket.sendSegments!;
  socket.sendSegments = (...args) => real(...args) - 3; // the kernel took all but the last three
  const counters = new Counters(64);
  const local = { vtepIp: ip('10.17.1.0'), subnet: parseCidr('10.17.1.0/24'), vtepMac: 2, underlayIp: ip('192.0.2.11'), vni: 1, port: 0 };
  const sender = new SegmentSender(createEncapsulation('ipip', local), counters, false);
  const route = { subnet: parseCidr('10.17.2.0/24'), gateway: ip('192.0.2.12'), encap: 'ipip' as const };
  const packet = partialChecksum(tcpPacket(20000));
  const slab = Buffer.alloc(packet.length + 64);
  packet.copy(slab, 64);
  const segments = Math.ceil(20000 / MSS);
  assert.is(sender.send(socket, slab, 64, packet.length, 40, MSS, 20, route, new ForwardingTables()), segments - 3);
  assert.is(counters.underlayOut.packets, segments - 3);
  assert.is(counters.drops.get('underlay', 'send-failed'), 3);
  assert.match(sender.lastVia, `segmented natively, sendmmsg: ${segments} segments`);
});

/** The IPv4 header checksum of the header at 0 (checksum field zero). */
function parseIpv4Checksum(p: Buffer): number {
  let sum = 0;
  for (let i = 0; i < 20; i += 2) sum += p.readUInt16BE(i);
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

Offload.run();

