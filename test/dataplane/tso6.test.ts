import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { VIRTIO_NET_HDR_GSO_TCPV6, tcpSegment6 } from '../../src/dataplane/tso6';
import { foldChecksum, onesComplementSum, pseudoHeaderSum6 } from '../../src/wire/checksum';
import { IPPROTO_TCP6, emitIpv6 } from '../../src/wire/ipv6';
import { dualPair, ip6 } from '../support/fake-nodes6';

const Tso6 = suite('TSO6');

/** A TCP/IPv6 super-packet from fd00:10:244:1::5 to fd00:10:244:2::9 with `payload` bytes of pattern. */
function superPacket(payload: number, flags = 0x18 | 0x01 | 0x80, options = 0): Buffer {
  const thl = 20 + options;
  const p = Buffer.alloc(40 + thl + payload);
  emitIpv6({ source: ip6('fd00:10:244:1::5'), destination: ip6('fd00:10:244:2::9'), nextHeader: IPPROTO_TCP6, payloadLength: thl + payload, hopLimit: 64 }, p, 0);
  p.writeUInt16BE(40000, 40);
  p.writeUInt16BE(5201, 42);
  p.writeUInt32BE(0xfffff000, 44); // the sequence number wraps inside the super-packet
  p[52] = (thl / 4) << 4;
  p[53] = flags;
  for (let i = 0; i < payload; i++) p[40 + thl + i] = (i * 13) & 0xff;
  return p;
}

function tcpChecksumValid(seg: Buffer, ipOff: number): boolean {
  const tcpLen = seg.readUInt16BE(ipOff + 4);
  const sum = onesComplementSum(seg, ipOff + 40, ipOff + 40 + tcpLen, pseudoHeaderSum6(seg, ipOff + 8, ipOff + 24, tcpLen, IPPROTO_TCP6));
  return foldChecksum(sum) === 0;
}

Tso6('segments: headers copied, lengths, sequence numbers (wrapping), flags on the right segments, checksums valid', () => {
  const pkt = superPacket(5000, 0x18 | 0x01 | 0x80, 12);
  const out = Buffer.alloc(10_000);
  const prefix = Buffer.from('pppppppppppppppppppppp');
  const lengths = new Uint32Array(16);
  const n = tcpSegment6(pkt, 0, pkt.length, 1388, 40, out, 0, prefix, prefix.length, lengths);
  assert.is(n, 4);
  let at = 0;
  const payloads: Buffer[] = [];
  for (let i = 0; i < n; i++) {
    const seg = out.subarray(at, at + lengths[i]);
    assert.equal(seg.subarray(0, 22), prefix);
    const chunk = i < 3 ? 1388 : 5000 - 3 * 1388;
    assert.is(lengths[i], 22 + 40 + 32 + chunk);
    assert.is(seg.readUInt16BE(22 + 4), 32 + chunk, 'payload length');
    assert.equal(seg.subarray(22 + 8, 22 + 40), pkt.subarray(8, 40), 'addresses');
    assert.is(seg.readUInt32BE(22 + 44), (0xfffff000 + i * 1388) >>> 0);
    const flags = seg[22 + 53];
    assert.is((flags & 0x01) !== 0, i === 3, 'FIN on the last only');
    assert.is((flags & 0x08) !== 0, i === 3, 'PSH on the last only');
    assert.is((flags & 0x80) !== 0, i === 0, 'CWR on the first only');
    assert.ok(tcpChecksumValid(seg, 22), `segment ${i} checksum`);
    assert.equal(seg.subarray(22 + 40 + 20, 22 + 40 + 32), pkt.subarray(60, 72), 'TCP options copied');
    payloads.push(seg.subarray(22 + 72));
    at += lengths[i];
  }
  assert.equal(Buffer.concat(payloads), pkt.subarray(72));
});

Tso6('what cannot be segmented is -1, never an exception', () => {
  const pkt = superPacket(3000);
  const out = Buffer.alloc(10_000);
  const lengths = new Uint32Array(4);
  const empty = Buffer.alloc(0);
  assert.is(tcpSegment6(pkt, 0, pkt.length, 1000, 40, out, 0, empty, 0, lengths), 3);
  assert.is(tcpSegment6(pkt, 0, pkt.length, 100, 40, out, 0, empty, 0, lengths), -1, 'more segments than room');
  assert.is(tcpSegment6(pkt, 0, pkt.length, 0, 40, out, 0, empty, 0, lengths), -1, 'gso size 0');
  assert.is(tcpSegment6(pkt, 0, pkt.length, 1000, 20, out, 0, empty, 0, lengths), -1, 'csumStart not after the header');
  assert.is(tcpSegment6(pkt, 0, pkt.length - 1, 1000, 40, out, 0, empty, 0, lengths), -1, 'payload length disagrees');
  assert.is(tcpSegment6(pkt, 0, pkt.length, 1000, 40, Buffer.alloc(100), 0, empty, 0, lengths), -1, 'no room');
  const udp = Buffer.from(pkt);
  udp[6] = 17;
  assert.is(tcpSegment6(udp, 0, udp.length, 1000, 40, out, 0, empty, 0, lengths), -1, 'not TCP');
  const thl = Buffer.from(pkt);
  thl[52] = 0x40;
  assert.is(tcpSegment6(thl, 0, thl.length, 1000, 40, out, 0, empty, 0, lengths), -1, 'TCP header under 20 bytes');
  assert.is(tcpSegment6(pkt, 0, 50, 1000, 40, out, 0, empty, 0, lengths), -1, 'too short');
});

/** An offload TUN read: virtio_net_hdr (NEEDS_CSUM, GSO TCPv6) then the super-packet. */
function tsoRead(pkt: Buffer, gsoSize: number): Buffer {
  const read = Buffer.alloc(10 + pkt.length);
  read[0] = 1;
  read[1] = VIRTIO_NET_HDR_GSO_TCPV6;
  read.writeUInt16LE(72, 2);
  read.writeUInt16LE(gsoSize, 4);
  read.writeUInt16LE(40, 6);
  read.writeUInt16LE(16, 8);
  pkt.copy(read, 10);
  return read;
}

async function settle(): Promise<void> {
  for (let turn = 0; turn < 200; turn++) await new Promise((resolve) => setImmediate(resolve));
}

for (const over of [4, 6] as const) {
  Tso6(`engine over IPv${over}: a TSO6 super-packet from an offload TUN arrives as valid segments carrying its bytes`, async () => {
    const { a, b, net, net6 } = dualPair(over, { offload: true });
    a.engine.start();
    b.engine.start();
    const pkt = superPacket(20_000, 0x18);
    const mss = over === 6 ? 1368 : 1388;
    a.tun.inject(tsoRead(pkt, mss));
    await settle();
    const n = Math.ceil(20_000 / mss);
    assert.is((over === 6 ? net6.log : net.log).length, n);
    assert.is(b.tun.written.length, n);
    for (const seg of b.tun.written) {
      assert.ok(seg.length <= (over === 6 ? 1430 : 1450), 'fits the path');
      assert.ok(tcpChecksumValid(seg, 0));
    }
    assert.equal(Buffer.concat(b.tun.written.map((s) => s.subarray(60))), pkt.subarray(60));
    assert.is(a.engine.counters.drops.total + b.engine.counters.drops.total, 0, JSON.stringify(a.engine.counters.drops));
  });
}

Tso6('engine over IPv4 with UDP GSO: the TSO6 segments leave in one GSO call and arrive whole, in order', async () => {
  const { a, b, net } = dualPair(4, { offload: true, gso: true });
  a.engine.start();
  b.engine.start();
  const pkt = superPacket(20_000, 0x18);
  a.tun.inject(tsoRead(pkt, 1388));
  await settle();
  const n = Math.ceil(20_000 / 1388);
  assert.is(a.socket.gsoCalls, 1, 'one UDP GSO call for the whole super-packet');
  assert.is(net.log.length, n);
  assert.is(a.engine.counters.underlayOut.packets, n);
  assert.equal(Buffer.concat(b.tun.written.map((s) => s.subarray(60))), pkt.subarray(60));
  assert.is(a.engine.counters.drops.total + b.engine.counters.drops.total, 0);
});

Tso6('engine: a traced TSO6 super-packet has its journey: route6, neighbor, FDB, how many segments left', async () => {
  const { a, b } = dualPair(4, { offload: true });
  a.engine.start();
  b.engine.start();
  const journeys: import('../../src/trace/journey').Journey[] = [];
  a.engine.tracer = { wants: () => true, withBytes: false, record: (j) => journeys.push(j) };
  a.tun.inject(tsoRead(superPacket(5000, 0x18), 1388));
  await settle();
  assert.is(journeys.length, 1);
  const j = journeys[0];
  assert.is(j.verdict, 'sent');
  assert.is(j.from, 'tun vxtun1 (TSO6 super-packet)');
  assert.equal(j.route, { subnet: 'fd00:10:244:2::/64', via: 'fd00:10:244:2::', encap: 'vxlan' });
  assert.equal(j.fdb, { mac: '02:00:00:00:06:02', dst: '192.0.2.12' });
  assert.is(j.via, 'udp socket, sendmmsg: 4 segments');
  assert.is(j.inner!.srcPort, 40000);
  assert.is(b.tun.written.length, 4);
});

Tso6('engine: segments larger than the IPv6 underlay path get Packet Too Big, not a cut', async () => {
  const { a } = dualPair(6, { offload: true });
  a.engine.start();
  a.tun.inject(tsoRead(superPacket(5000, 0x10), 1388));
  await settle();
  assert.is(a.engine.counters.drops.get('mtu', 'too-big'), 1);
  assert.is(a.tun.written.length, 1);
  assert.is(a.tun.written[0][40], 2, 'ICMPv6 Packet Too Big');
  assert.is(a.tun.written[0].readUInt32BE(44), 1430);
});

Tso6.run();
